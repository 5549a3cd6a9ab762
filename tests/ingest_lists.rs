//! `ingest` on real-world folders and list files, through the binary: a crawl
//! reads no list file, and a messy list file never aborts the node.

mod common;

use common::*;

#[test]
fn an_ljspeech_folder_ingests_every_wav_and_does_not_read_its_metadata_csv() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("LJSpeech-1.1");
    let wavs = corpus.join("wavs");
    std::fs::create_dir_all(&wavs).unwrap();
    let mut metadata = String::new();
    for i in 1..=4 {
        let id = format!("LJ001-{i:04}");
        std::fs::write(wavs.join(format!("{id}.wav")), format!("RIFF audio {id}")).unwrap();
        // Headerless, pipe-separated, with commas and quotes in the text.
        metadata.push_str(&format!(
            "{id}|Printing, in the \"only\" sense {i}|Printing {i}\n"
        ));
    }
    std::fs::write(corpus.join("metadata.csv"), metadata).unwrap();
    for paths in [["LJSpeech-1.1"], ["LJSpeech-1.1/**/*"]] {
        let store = format!("store-{}", paths[0].len());
        let dag = ingest_dag(dir.path(), &paths, "");
        ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", &store]));
        assert_eq!(
            sql_number(
                dir.path(),
                &store,
                "SELECT count(*) FROM ingest WHERE uri LIKE '%/wavs/LJ001-%.wav'"
            ),
            4,
            "{paths:?}"
        );
        assert_eq!(
            sql_number(dir.path(), &store, "SELECT count(*) FROM ingest"),
            4
        );
        let rejects = sql_csv(dir.path(), &store, "SELECT uri, reason FROM ingest_rejects");
        assert_eq!(rejects.len(), 2, "{rejects:?}");
        assert!(
            rejects[1].contains("metadata.csv")
                && rejects[1].contains("not_audio: metadata.csv is a list file found by a crawl"),
            "{rejects:?}"
        );
    }
}

#[test]
fn a_list_file_with_a_bom_crlf_a_bad_byte_and_colliding_columns_still_ingests() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(
            dir.path().join(format!("{name}.wav")),
            format!("audio {name}"),
        )
        .unwrap();
    }
    let mut list: Vec<u8> = b"\xEF\xBB\xBF".to_vec();
    list.extend_from_slice(
        b"uri,language,source_id,reason,pre_reason,f,blob,reject_reason,uri_input\r\n\
          a.wav,en,s1,why,p1,f1,b1,r1,u1\r\n\
          b.wav,caf\xE9,s2,why,p2,f2,b2,r2,u2\r\n\
          c.wav,de,s3,why,p3,f3,b3,r3,u3\r\n",
    );
    std::fs::write(dir.path().join("list.csv"), list).unwrap();
    let dag = ingest_dag(dir.path(), &["list.csv"], "");
    ok(speechmill(dir.path()).args(["run", dag.to_str().unwrap(), "--store", "store"]));

    let rows = sql_csv(
        dir.path(),
        "store",
        "SELECT language, source_id_input, reason_input, pre_reason, f, blob_input, \
         reject_reason_input, uri_input FROM ingest ORDER BY uri",
    );
    assert_eq!(
        rows[1..],
        [
            "en,s1,why,p1,f1,b1,r1,u1".to_string(),
            "de,s3,why,p3,f3,b3,r3,u3".to_string()
        ]
    );
    // The bad line is a reject naming the file and the line.
    let rejects = sql_csv(
        dir.path(),
        "store",
        "SELECT uri, reason FROM ingest_rejects",
    );
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert!(
        rejects[1].contains("list.csv#L3,bad_list_entry: /")
            && rejects[1].contains("/list.csv line 3: not UTF-8 (byte 0xE9"),
        "{rejects:?}"
    );
}
