//! DAG files: TOML documents that name nodes, each a built-in `stage` or raw `sql`.
//!
//! ```toml
//! [nodes.ingest]
//! stage = "ingest"
//! params = { paths = ["data/*.wav"] }
//!
//! [nodes.decode]
//! stage = "decode"
//! inputs = ["ingest"]
//!
//! [nodes.long_ones]
//! sql = "SELECT * FROM decode WHERE duration_s > 10"
//! inputs = ["decode"]
//! ```
//!
//! Loading parses every node's params into the stage's typed params at once, so a
//! wrong DAG fails before anything runs, with an error naming the file and node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::error::one_line;
use crate::stage::{ConfiguredStage, StageRegistry};

/// A DAG that failed validation; the message names the file and the node.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DagError {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDag {
    #[serde(default)]
    description: Option<String>,
    nodes: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    stage: Option<String>,
    sql: Option<String>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    params: toml::Table,
}

/// What a node computes.
pub enum NodeKind {
    /// A built-in stage with its validated params.
    Stage(Box<dyn ConfiguredStage>),
    /// A raw SQL query over the inputs, each registered under its node name.
    Sql(String),
}

/// One validated node of a DAG.
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub inputs: Vec<String>,
}

impl Node {
    /// The stage name (`sql` for raw SQL nodes).
    pub fn stage_name(&self) -> &str {
        match &self.kind {
            NodeKind::Stage(s) => s.stage_name(),
            NodeKind::Sql(_) => "sql",
        }
    }
}

/// A validated DAG whose nodes are in dependency order.
pub struct Dag {
    pub file: String,
    pub description: Option<String>,
    /// Nodes in topological order (inputs before the nodes that read them).
    pub nodes: Vec<Node>,
}

/// A `--set node.param=value` override; the value is read as a TOML value, a bare
/// word is a string.
#[derive(Debug, Clone)]
pub struct Override {
    pub node: String,
    pub param: String,
    pub value: toml::Value,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, raw) = s
            .split_once('=')
            .ok_or_else(|| format!("--set {s}: expected NODE.PARAM=VALUE"))?;
        let (node, param) = key
            .trim()
            .split_once('.')
            .ok_or_else(|| format!("--set {s}: expected NODE.PARAM=VALUE"))?;
        if node.is_empty() || param.is_empty() {
            return Err(format!("--set {s}: expected NODE.PARAM=VALUE"));
        }
        Ok(Override {
            node: node.to_string(),
            param: param.to_string(),
            value: parse_toml_value(raw.trim()),
        })
    }
}

/// Reads `raw` as a TOML value; anything that is not valid TOML is a string.
fn parse_toml_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

impl Dag {
    /// Loads and validates a DAG file, applying `--set` overrides.
    pub fn load(
        path: &Path,
        registry: &StageRegistry,
        overrides: &[Override],
    ) -> Result<Dag, DagError> {
        let file = path.display().to_string();
        let text = with_extends(path, 0)?;
        Self::parse(&text, &file, registry, overrides)
    }

    /// Parses and validates DAG text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        registry: &StageRegistry,
        overrides: &[Override],
    ) -> Result<Dag, DagError> {
        let err = |message: String| DagError {
            file: file.to_string(),
            message,
        };
        let raw: RawDag = toml::from_str(text)
            .map_err(|e| err(format!("not a valid DAG: {}", one_line(&e.to_string()))))?;
        if raw.nodes.is_empty() {
            return Err(err("the DAG has no [nodes.NAME] tables".into()));
        }

        let mut raw_nodes: BTreeMap<String, RawNode> = BTreeMap::new();
        // Keep the file's order for display and as the tie-break in topological order.
        let mut order: Vec<String> = Vec::new();
        for (name, value) in raw.nodes {
            validate_node_name(&name).map_err(|m| err(format!("node `{name}`: {m}")))?;
            let node: RawNode = value.try_into().map_err(|e: toml::de::Error| {
                err(format!("node `{name}`: {}", one_line(e.message())))
            })?;
            order.push(name.clone());
            raw_nodes.insert(name, node);
        }

        for o in overrides {
            let node = raw_nodes.get_mut(&o.node).ok_or_else(|| {
                err(format!(
                    "--set {}.{}: no node named `{}` (nodes: {})",
                    o.node,
                    o.param,
                    o.node,
                    order.join(", ")
                ))
            })?;
            node.params.insert(o.param.clone(), o.value.clone());
        }

        for name in &order {
            let node = &raw_nodes[name];
            for input in &node.inputs {
                if !raw_nodes.contains_key(input) {
                    return Err(err(format!(
                        "node `{name}`: input `{input}` is not a node of this DAG"
                    )));
                }
                if input == name {
                    return Err(err(format!("node `{name}`: reads its own output (cycle)")));
                }
            }
        }
        let topo = topological_order(&order, &raw_nodes).map_err(err)?;

        let mut nodes = Vec::with_capacity(topo.len());
        for name in topo {
            let Some(raw_node) = raw_nodes.remove(&name) else {
                continue;
            };
            let kind = match (raw_node.stage, raw_node.sql) {
                (Some(_), Some(_)) => {
                    return Err(err(format!(
                        "node `{name}`: give either `stage` or `sql`, not both"
                    )));
                }
                (None, None) => {
                    return Err(err(format!(
                        "node `{name}`: needs `stage = \"...\"` or `sql = \"...\"`"
                    )));
                }
                (None, Some(sql)) => {
                    if !raw_node.params.is_empty() {
                        return Err(err(format!("node `{name}`: a `sql` node takes no params")));
                    }
                    NodeKind::Sql(sql)
                }
                (Some(stage_name), None) => {
                    let stage = registry.get(&stage_name).ok_or_else(|| {
                        err(format!(
                            "node `{name}`: unknown stage `{stage_name}` (known: {})",
                            registry.names().join(", ")
                        ))
                    })?;
                    let configured = stage
                        .configure(raw_node.params)
                        .map_err(|m| err(format!("node `{name}` (stage {stage_name}): {m}")))?;
                    let arity = configured.input_arity();
                    if !arity.accepts(raw_node.inputs.len()) {
                        return Err(err(format!(
                            "node `{name}` (stage {stage_name}): takes {arity}, got {}",
                            raw_node.inputs.len()
                        )));
                    }
                    NodeKind::Stage(configured)
                }
            };
            nodes.push(Node {
                name,
                kind,
                inputs: raw_node.inputs,
            });
        }
        Ok(Dag {
            file: file.to_string(),
            description: raw.description,
            nodes,
        })
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Names of `target` and every node it depends on, in topological order.
    pub fn ancestors_and_self(&self, target: &str) -> Result<Vec<String>, DagError> {
        if self.node(target).is_none() {
            return Err(DagError {
                file: self.file.clone(),
                message: format!(
                    "--until {target}: no node named `{target}` (nodes: {})",
                    self.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let mut wanted: HashSet<&str> = HashSet::from([target]);
        for node in self.nodes.iter().rev() {
            if wanted.contains(node.name.as_str()) {
                wanted.extend(node.inputs.iter().map(String::as_str));
            }
        }
        Ok(self
            .nodes
            .iter()
            .filter(|n| wanted.contains(n.name.as_str()))
            .map(|n| n.name.clone())
            .collect())
    }
}

/// How deep `extends` may chain.
const MAX_EXTENDS: usize = 8;

/// The DAG text of `path` with its `extends = "other.toml"` (a path relative to it)
/// resolved: the other file's nodes first, then this file's, a node of the same name
/// replacing the other's; this file's description if it has one.
fn with_extends(path: &Path, depth: usize) -> Result<String, DagError> {
    let file = path.display().to_string();
    let err = |message: String| DagError {
        file: file.clone(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("cannot read DAG file: {e}")))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| err(format!("not a valid DAG: {}", one_line(&e.to_string()))))?;
    let Some(extends) = table.remove("extends") else {
        return Ok(text);
    };
    let Some(base) = extends.as_str() else {
        return Err(err("`extends` must be a path to another DAG file".into()));
    };
    if depth >= MAX_EXTENDS {
        return Err(err(format!(
            "`extends` chains more than {MAX_EXTENDS} files (a loop?)"
        )));
    }
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
    let mut merged: toml::Table = toml::from_str(&with_extends(&base_path, depth + 1)?)
        .map_err(|e| err(format!("extends {base}: {}", one_line(&e.to_string()))))?;
    let own_nodes = match table.remove("nodes") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(err("`nodes` must be a table of [nodes.NAME]".into())),
        None => toml::Table::new(),
    };
    let nodes = merged
        .entry("nodes")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(nodes) = nodes {
        for (name, node) in own_nodes {
            nodes.insert(name, node);
        }
    }
    for (key, value) in table {
        merged.insert(key, value);
    }
    toml::to_string(&merged).map_err(|e| err(format!("extends {base}: {e}")))
}

fn validate_node_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(
            "node names are lower-case letters, digits and `_` (they become SQL table names)"
                .into(),
        );
    }
    if name.ends_with("_rejects") {
        return Err("names ending in `_rejects` are reserved for rejects tables".into());
    }
    Ok(())
}

/// Kahn's algorithm, taking ready nodes in file order so the order is stable.
fn topological_order(
    order: &[String],
    nodes: &BTreeMap<String, RawNode>,
) -> Result<Vec<String>, String> {
    let mut remaining: HashMap<&str, usize> = order
        .iter()
        .map(|n| (n.as_str(), nodes[n].inputs.len()))
        .collect();
    let mut done: Vec<String> = Vec::with_capacity(order.len());
    let mut placed: HashSet<&str> = HashSet::new();
    while done.len() < order.len() {
        let next = order
            .iter()
            .find(|n| !placed.contains(n.as_str()) && remaining[n.as_str()] == 0);
        let Some(next) = next else {
            let stuck: Vec<&str> = order
                .iter()
                .map(String::as_str)
                .filter(|n| !placed.contains(n))
                .collect();
            return Err(format!("cycle between nodes {}", stuck.join(" → ")));
        };
        placed.insert(next);
        done.push(next.clone());
        for (name, node) in nodes {
            let hits = node.inputs.iter().filter(|i| *i == next).count();
            if let Some(r) = remaining.get_mut(name.as_str()).filter(|_| hits > 0) {
                *r -= hits;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::dataframe::DataFrame;
    use datafusion::logical_expr::ScalarUDF;

    use super::*;
    use crate::stage::{InputArity, Stage, StageContext, parse_params};

    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct EchoParams {
        #[serde(default)]
        times: u32,
    }

    struct Echo;
    struct ConfiguredEcho(EchoParams);

    impl Stage for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn configure(&self, params: toml::Table) -> Result<Box<dyn ConfiguredStage>, String> {
            Ok(Box::new(ConfiguredEcho(parse_params(params)?)))
        }
        fn udfs(&self) -> Vec<ScalarUDF> {
            vec![]
        }
    }

    #[async_trait::async_trait]
    impl ConfiguredStage for ConfiguredEcho {
        fn stage_name(&self) -> &'static str {
            "echo"
        }
        fn version(&self) -> u32 {
            1
        }
        fn input_arity(&self) -> InputArity {
            InputArity::AtLeast(0)
        }
        fn params_json(&self) -> serde_json::Value {
            serde_json::to_value(&self.0).unwrap_or_default()
        }
        async fn plan(
            &self,
            cx: &StageContext,
            _inputs: Vec<DataFrame>,
        ) -> crate::Result<DataFrame> {
            Ok(cx.session.sql("SELECT 1 AS one").await?)
        }
    }

    fn registry() -> StageRegistry {
        let mut r = StageRegistry::new();
        r.register(Arc::new(Echo));
        r
    }

    fn parse(text: &str, overrides: &[Override]) -> Result<Dag, DagError> {
        Dag::parse(text, "t.toml", &registry(), overrides)
    }

    #[test]
    fn extends_takes_the_other_files_nodes_and_lets_this_file_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "description = \"base\"\n[nodes.a]\nsql = \"SELECT 1 AS x\"\n[nodes.b]\nsql = \"SELECT 2 AS x\"\n",
        )
        .unwrap();
        let top = dir.path().join("top.toml");
        std::fs::write(
            &top,
            "extends = \"base.toml\"\n[nodes.b]\nsql = \"SELECT 3 AS x\"\n[nodes.c]\nsql = \"SELECT * FROM a\"\ninputs = [\"a\"]\n",
        )
        .unwrap();
        let dag = Dag::load(&top, &registry(), &[]).unwrap();
        let names: Vec<&str> = dag.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let b = dag.node("b").unwrap();
        assert!(matches!(&b.kind, NodeKind::Sql(q) if q.contains('3')));
        assert_eq!(dag.description.as_deref(), Some("base"));
        std::fs::write(&top, "extends = \"top.toml\"\n").unwrap();
        let err = Dag::load(&top, &registry(), &[]).err().unwrap().to_string();
        assert!(err.contains("extends"), "{err}");
    }

    #[test]
    fn nodes_come_out_in_dependency_order() {
        let dag = parse(
            "[nodes.c]\nstage = \"echo\"\ninputs = [\"b\"]\n[nodes.a]\nstage = \"echo\"\n[nodes.b]\nsql = \"SELECT * FROM a\"\ninputs = [\"a\"]\n",
            &[],
        )
        .unwrap();
        let names: Vec<&str> = dag.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(dag.ancestors_and_self("b").unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_cycle_names_its_nodes() {
        let err = parse(
            "[nodes.a]\nstage = \"echo\"\ninputs = [\"b\"]\n[nodes.b]\nstage = \"echo\"\ninputs = [\"a\"]\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().starts_with("t.toml: cycle between nodes"),
            "{err}"
        );
    }

    #[test]
    fn overrides_are_read_as_toml_values_and_bare_words_as_strings() {
        let o: Override = "asr.beam_size=5".parse().unwrap();
        assert_eq!(o.value, toml::Value::Integer(5));
        let o: Override = "ingest.paths=[\"a/*.wav\", \"s3://b/p/\"]".parse().unwrap();
        assert_eq!(o.value.as_array().map(|a| a.len()), Some(2));
        let o: Override = "asr.model=whisper-base".parse().unwrap();
        assert_eq!(o.value, toml::Value::String("whisper-base".into()));
        assert!("nodot=1".parse::<Override>().is_err());
    }

    #[test]
    fn a_mistyped_override_names_node_and_parameter() {
        let o: Override = "a.times=\"x\"".parse().unwrap();
        let err = parse("[nodes.a]\nstage = \"echo\"\n", &[o])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("node `a` (stage echo): parameter `times`"),
            "{err}"
        );
    }

    #[test]
    fn rejects_table_names_are_reserved() {
        let err = parse("[nodes.a_rejects]\nstage = \"echo\"\n", &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("reserved"), "{err}");
    }
}
