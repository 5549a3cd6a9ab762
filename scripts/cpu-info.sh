#!/usr/bin/env bash
# Where a benchmark ran: the CPU model, the cores this process may use, and the
# instruction-set features that choose ONNX Runtime's and CTranslate2's kernels
# (AVX2/FMA, AVX-512, VNNI for int8, BF16, AMX). Printed under each benchmark's table:
# a ratio measured on one CPU need not hold on another.
#
#   bash scripts/cpu-info.sh
set -euo pipefail
model="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2 || true)"
have=()
for f in avx2 fma avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_tile amx_int8 amx_bf16; do
  case " $flags " in *" $f "*) have+=("$f") ;; esac
done
echo "CPU: ${model:-unknown} · cores: $(nproc) · features: ${have[*]:-none of avx2/avx512/vnni/bf16/amx}"
# The int8 encoder's one per-CPU choice (README, "Models"): ONNX Runtime's MatMulNBits
# has no AMX kernel, its integer GEMM (MatMulInteger) has.
case " $flags " in
  *" amx_int8 "*) echo "int8: this CPU has AMX; asr.precision = \"int8-rows\" runs the encoder on it (README, Models)" ;;
esac
