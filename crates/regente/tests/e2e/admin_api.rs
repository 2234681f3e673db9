//! The admin API: users, runtimes, robots and their packages, executions,
//! organisations. Shapes only: the tests run on a server built in the test
//! process, but for the package size limit, set by the binary's environment.

use std::collections::BTreeSet;
use std::io::{Cursor, Write};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::support::*;

const USERS: &str = "/api/admin/users";
const RUNTIMES: &str = "/api/admin/runtimes";
const ROBOTS: &str = "/api/admin/robots";
const EXECUTIONS: &str = "/api/admin/executions";
const ORGANIZATIONS: &str = "/api/admin/organizations";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn post_json(server: &Api, token: &str, path: &str, body: &Value) -> Reply {
    server.req("POST", path).auth(token).json(body).send()
}

#[test]
fn users_are_created_listed_and_deleted() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let created = server.create_user(&admin, "ops@example.com", "ops password é", "admin");
    assert!(
        is_execution_id(created["id"].as_str().unwrap()),
        "{created}"
    );
    assert_eq!(created["username"], "ops@example.com");
    assert_eq!(created["role"], "admin");
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());
    let integration = server.create_user(&admin, "bot", "bot-password", "integration");
    assert_eq!(integration["role"], "integration");

    // The admin API takes plain passwords; the login takes them in base64.
    let ops = server.login("ops@example.com", "ops password é");
    server.get(USERS, &ops).expect(200);

    let list = server.get(USERS, &admin).expect(200).json();
    let mut names: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert!(u.get("password_hash").is_none(), "{u}");
            (
                u["username"].as_str().unwrap().to_owned(),
                u["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("admin".to_owned(), "admin".to_owned()),
            ("bot".to_owned(), "integration".to_owned()),
            ("ops@example.com".to_owned(), "admin".to_owned()),
        ]
    );

    // Duplicate, bad role, bad password, bad body.
    let duplicate = post_json(
        &server,
        &admin,
        USERS,
        &json!({"username": "bot", "password": "another-password", "role": "admin"}),
    );
    assert!(message(&assert_error(&duplicate, 409, USERS)).contains("bot"));
    for (body, mentions) in [
        (
            json!({"username": "x1", "password": "long-enough", "role": "root"}),
            "role",
        ),
        (
            json!({"username": "x2", "password": "long-enough", "role": "Admin "}),
            "role",
        ),
        (
            json!({"username": "x3", "password": "short", "role": "admin"}),
            "password",
        ),
        (
            json!({"username": "", "password": "long-enough", "role": "admin"}),
            "username",
        ),
        (
            json!({"username": " x4", "password": "long-enough", "role": "admin"}),
            "username",
        ),
        (json!({"username": "x5", "role": "admin"}), "expected"),
        (
            json!({"username": "x6", "password": 12345678, "role": "admin"}),
            "expected",
        ),
        (json!(["x7"]), "expected"),
    ] {
        let reply = post_json(&server, &admin, USERS, &body);
        let error = assert_error(&reply, 400, USERS);
        assert!(message(&error).contains(mentions), "{body}: {error}");
    }
    let reply = server
        .req("POST", USERS)
        .auth(&admin)
        .body(b"{\"username\":".to_vec(), "application/json")
        .send();
    assert_error(&reply, 400, USERS);
    assert_eq!(
        server
            .get(USERS, &admin)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Delete: 204, then 404; deleting yourself is refused. The runs a deleted
    // user submitted stay.
    let (runtime, _) = server.create_runtime(&admin, "rt");
    let robot = robot(&server, &admin, "robot");
    let bot_token = server.login("bot", "bot-password");
    let run = server.queue(&bot_token, &runtime, &robot, None);
    let keyed = server
        .req(
            "POST",
            &format!("/api/integration/v2/run/{runtime}/{robot}"),
        )
        .auth(&bot_token)
        .header("Idempotency-Key", b"bot-key")
        .send()
        .expect(200);
    let bot = format!("{USERS}/{}", integration["id"].as_str().unwrap());
    server.req("DELETE", &bot).auth(&admin).send().expect(204);
    assert_error(&server.req("DELETE", &bot).auth(&admin).send(), 404, &bot);
    assert_eq!(server.execution(&admin, &run)["status"], "PENDENT");
    let keyed = keyed.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(server.execution(&admin, &keyed)["status"], "PENDENT");
    // A new user of the same name does not inherit the old user's keys.
    server.create_user(&admin, "bot", "bot-password", "integration");
    let new_bot = server.login("bot", "bot-password");
    let fresh = server
        .req(
            "POST",
            &format!("/api/integration/v2/run/{runtime}/{robot}"),
        )
        .auth(&new_bot)
        .header("Idempotency-Key", b"bot-key")
        .send()
        .expect(200)
        .json();
    assert_ne!(fresh["id"], keyed.as_str());
    let me = format!("{USERS}/{}", user_id(&server, &admin, ADMIN_USER));
    assert_error(&server.req("DELETE", &me).auth(&admin).send(), 409, &me);
    // Another admin may delete the first one.
    server.req("DELETE", &me).auth(&ops).send().expect(204);
    assert_error(&server.get(USERS, &admin), 401, USERS);
    assert_eq!(
        server
            .get(USERS, &ops)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn runtimes_get_strong_keys_and_are_listed_offline() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let reply = post_json(
        &server,
        &admin,
        RUNTIMES,
        &json!({"name": "desk-01", "slots": 2}),
    )
    .expect(201);
    let created = reply.json();
    let key = created["key"].as_str().expect("the key, shown once");
    assert!(key.len() >= 32, "key {key:?} is too short");
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key:?}");
    assert!(is_execution_id(created["id"].as_str().unwrap()));
    let (second, second_key) = server.create_runtime(&admin, "desk-02");
    assert_ne!(second_key, key);
    assert!(second_key.len() >= 32 && second_key.bytes().all(|b| b.is_ascii_alphanumeric()));

    let list = server.get(RUNTIMES, &admin).expect(200).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for runtime in list {
        assert_eq!(runtime["online"], false, "{runtime}");
        assert_eq!(runtime["last_seen"], Value::Null, "{runtime}");
        assert!(
            runtime.get("key").is_none(),
            "the key is shown once: {runtime}"
        );
        assert!(!runtime.to_string().contains(key), "{runtime}");
    }
    let first = list
        .iter()
        .find(|r| r["id"] == created["id"])
        .expect("listed");
    assert_eq!(first["name"], "desk-01");
    assert_eq!(first["slots"], 2);
    let second = list
        .iter()
        .find(|r| r["id"] == second.as_str())
        .expect("listed");
    assert_eq!(second["slots"], 1, "one slot by default");

    for body in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x", "slots": 0}),
        json!({"name": "x", "slots": -1}),
        json!({"name": "x", "slots": 100000}),
        json!({"name": 7}),
    ] {
        assert_error(&post_json(&server, &admin, RUNTIMES, &body), 400, RUNTIMES);
    }
    assert_eq!(
        server
            .get(RUNTIMES, &admin)
            .expect(200)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn robots_list_their_versions_with_the_sha256_of_each_zip() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let first_zip = robot_zip(&manifest("consulta-cnpj"), &[("main.py", b"print(1)\n")]);
    let first = server.upload_robot(&admin, first_zip.clone());
    assert_eq!(keys(&first), ["id", "name", "sha256", "version"]);
    assert_eq!(first["name"], "consulta-cnpj");
    assert_eq!(first["version"], 1);
    assert_eq!(first["sha256"], sha256_hex(&first_zip).as_str());
    let id = first["id"].as_str().unwrap().to_owned();

    let second_zip = robot_zip(&manifest("consulta-cnpj"), &[("main.py", b"print(2)\n")]);
    let second = server.upload_robot(&admin, second_zip.clone());
    assert_eq!(second["id"], id.as_str());
    assert_eq!(second["version"], 2);
    assert_eq!(second["sha256"], sha256_hex(&second_zip).as_str());
    let other = server.upload_robot(&admin, robot_zip(&manifest("other-robot"), &[]));
    assert_ne!(other["id"], id.as_str());
    assert_eq!(other["version"], 1);

    let list = server.get(ROBOTS, &admin).expect(200).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let robot = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(robot["name"], "consulta-cnpj");
    let versions = robot["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["sha256"], sha256_hex(&first_zip).as_str());
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["sha256"], sha256_hex(&second_zip).as_str());
    assert_eq!(versions[1]["size"], second_zip.len());
    assert_eq!(versions[1]["command"], json!(["python3", "main.py"]));
    assert_eq!(versions[1]["timeout_seconds"], 600);
    assert_eq!(
        versions[1]["variables"],
        json!([
            {"name": "CNPJ", "type": "text", "default": "00.000.000/0001-00"},
            {"name": "LIMIT", "type": "number", "default": 10},
        ])
    );
    let detail = server
        .get(&format!("{ROBOTS}/{id}"), &admin)
        .expect(200)
        .json();
    assert_eq!(detail, robot);
}

#[test]
fn packages_may_hold_the_manifest_in_one_top_level_folder() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    // What zipping a folder produces: directory entries and a common prefix.
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.add_directory("my-robot/", deflated()).unwrap();
    writer
        .start_file("my-robot/robot.toml", deflated())
        .unwrap();
    writer
        .write_all(manifest("folder-robot").as_bytes())
        .unwrap();
    writer.add_directory("my-robot/lib/", deflated()).unwrap();
    writer
        .start_file("my-robot/lib/util.py", deflated())
        .unwrap();
    writer.write_all(b"X = 1\n").unwrap();
    let zip = writer.finish().unwrap().into_inner();
    let uploaded = server.upload_robot(&admin, zip.clone());
    assert_eq!(uploaded["name"], "folder-robot");
    assert_eq!(uploaded["sha256"], sha256_hex(&zip).as_str());
    // Without directory entries, and with a UTF-8 byte order mark in robot.toml.
    let bom = format!("\u{feff}{}", manifest("folder-robot"));
    let zip = zip_of(&[("pkg/robot.toml", bom.as_bytes()), ("pkg/main.py", b"")]);
    assert_eq!(server.upload_robot(&admin, zip)["version"], 2);
    // Stored (not deflated) entries are fine too.
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    writer.start_file("robot.toml", stored).unwrap();
    writer
        .write_all(manifest("folder-robot").as_bytes())
        .unwrap();
    let zip = writer.finish().unwrap().into_inner();
    assert_eq!(server.upload_robot(&admin, zip)["version"], 3);
    // Two top-level folders: no single root, so no manifest.
    let zip = zip_of(&[
        ("a/robot.toml", manifest("x").as_bytes()),
        ("b/main.py", b""),
    ]);
    let body = assert_error(&server.upload_robot_reply(&admin, zip), 400, ROBOTS);
    assert!(message(&body).contains("robot.toml"), "{body}");
}

/// A zip whose entries inflate to `entries` x 8 MiB of zeros, made by
/// compressing 8 MiB once and copying the compressed entry.
fn zip_bomb(entries: usize) -> Vec<u8> {
    let mut seed = ZipWriter::new(Cursor::new(Vec::new()));
    seed.start_file("zeros", deflated()).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
    for _ in 0..8 {
        seed.write_all(&chunk).unwrap();
    }
    let seed = seed.finish().unwrap().into_inner();
    let mut archive = ZipArchive::new(Cursor::new(seed)).unwrap();
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("robot.toml", deflated()).unwrap();
    writer.write_all(manifest("bomb").as_bytes()).unwrap();
    for n in 0..entries {
        let file = archive.by_index_raw(0).unwrap();
        writer
            .raw_copy_file_rename(file, format!("zeros-{n:03}"))
            .unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn bad_packages_answer_400_or_413_naming_the_problem() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let good = manifest("fine-robot");

    let mut symlink = ZipWriter::new(Cursor::new(Vec::new()));
    symlink.start_file("robot.toml", deflated()).unwrap();
    symlink.write_all(good.as_bytes()).unwrap();
    symlink
        .add_symlink("secrets", "/etc/passwd", SimpleFileOptions::default())
        .unwrap();
    let symlink = symlink.finish().unwrap().into_inner();

    let mut too_many = ZipWriter::new(Cursor::new(Vec::new()));
    too_many.start_file("robot.toml", deflated()).unwrap();
    too_many.write_all(good.as_bytes()).unwrap();
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for n in 0..10_001 {
        too_many.start_file(format!("f{n}"), stored).unwrap();
    }
    let too_many = too_many.finish().unwrap().into_inner();

    let cases: Vec<(&str, Vec<u8>, u16, Vec<&str>)> = vec![
        (
            "no robot.toml",
            zip_of(&[("main.py", b"print(1)")]),
            400,
            vec!["robot.toml"],
        ),
        (
            "manifest without command",
            robot_zip("name = \"x\"\n", &[]),
            400,
            vec!["robot.toml", "command"],
        ),
        (
            "manifest that is not TOML",
            robot_zip("name = \n[[[", &[]),
            400,
            vec!["robot.toml"],
        ),
        (
            "manifest with an unknown key",
            robot_zip(&format!("{good}\nshell = true\n"), &[]),
            400,
            vec!["robot.toml", "shell"],
        ),
        (
            "bad robot name",
            robot_zip(&good.replace("fine-robot", "../fine"), &[]),
            400,
            vec!["robot.toml", "name"],
        ),
        (
            "bad variable name",
            robot_zip(&good.replace("\"CNPJ\"", "\"C-NPJ\""), &[]),
            400,
            vec!["C-NPJ"],
        ),
        (
            "bad variable type",
            robot_zip(&good.replace("\"number\"", "\"integer\""), &[]),
            400,
            vec!["integer"],
        ),
        (
            "default not fitting the type",
            robot_zip(&good.replace("default = 10", "default = \"ten\""), &[]),
            400,
            vec!["LIMIT"],
        ),
        (
            "path escaping the package",
            robot_zip(&good, &[("../evil", b"x")]),
            400,
            vec!["../evil"],
        ),
        (
            "nested path escaping the package",
            robot_zip(&good, &[("lib/../../evil.py", b"x")]),
            400,
            vec!["lib/../../evil.py"],
        ),
        (
            "absolute path",
            robot_zip(&good, &[("/etc/evil", b"x")]),
            400,
            vec!["/etc/evil", "absolute"],
        ),
        (
            "drive letter",
            robot_zip(&good, &[("C:/evil", b"x")]),
            400,
            vec!["C:/evil"],
        ),
        ("symbolic link", symlink, 400, vec!["secrets", "link"]),
        ("not a zip", b"just some text".to_vec(), 400, vec!["zip"]),
        ("empty body", Vec::new(), 400, vec!["zip"]),
        ("too many entries", too_many, 413, vec!["entries"]),
        ("zip bomb", zip_bomb(70), 413, vec!["unpacked"]),
    ];
    for (what, zip, status, mentions) in cases {
        let reply = server.upload_robot_reply(&admin, zip);
        let body = check_error_shape(&reply, ROBOTS).unwrap_or_else(|why| panic!("{what}: {why}"));
        assert_eq!(reply.status, status, "{what}: {body}");
        for mention in mentions {
            assert!(
                message(&body).contains(mention),
                "{what}: the message should name {mention:?}: {body}"
            );
        }
    }
    assert_eq!(
        server.get(ROBOTS, &admin).expect(200).json(),
        json!([]),
        "no bad package was stored"
    );
}

#[test]
fn packages_over_the_size_limit_answer_413() {
    let limit = 64 * 1024;
    let server = TestServer::start_with(&[("REGENTE_MAX_PACKAGE_BYTES", "65536")]);
    let admin = server.admin_token();
    // Incompressible content, stored, so the zip is over the limit.
    let mut noise = Vec::with_capacity(limit + 1024);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    while noise.len() < limit + 1024 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        noise.extend_from_slice(&state.to_le_bytes());
    }
    let big = robot_zip(&manifest("big-robot"), &[("noise.bin", &noise)]);
    assert!(big.len() > limit);
    let body = assert_error(&server.upload_robot_reply(&admin, big), 413, ROBOTS);
    assert!(message(&body).contains("large"), "{body}");
    // Just under the limit is fine.
    let small = robot_zip(
        &manifest("big-robot"),
        &[("noise.bin", &noise[..limit - 4096])],
    );
    assert!(small.len() <= limit, "{}", small.len());
    assert_eq!(server.upload_robot(&admin, small)["version"], 1);
    // Other routes keep their own (smaller) limit: a 2 MiB JSON body is refused.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let reply = server
        .req("POST", RUNTIMES)
        .auth(&admin)
        .body(huge.into_bytes(), "application/json")
        .send();
    assert_error(&reply, 413, RUNTIMES);
}

/// Execution ids of a list answer.
fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn executions_are_filtered_and_paged_without_gaps() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let (r1, _) = server.create_runtime(&admin, "r1");
    let (r2, _) = server.create_runtime(&admin, "r2");
    let a = robot(&server, &admin, "robot-a");
    let b = robot(&server, &admin, "robot-b");
    let plan = [
        (&r1, &a),
        (&r1, &b),
        (&r2, &a),
        (&r2, &b),
        (&r1, &a),
        (&r2, &a),
        (&r1, &b),
        (&r2, &b),
        (&r1, &a),
    ];
    let created: Vec<String> = plan
        .iter()
        .map(|(runtime, robot)| server.queue(&admin, runtime, robot, None))
        .collect();
    for canceled in [1, 4, 5] {
        server
            .delete(&admin, plan[canceled].0, &created[canceled])
            .expect(200);
    }
    let details: Vec<Value> = created
        .iter()
        .map(|id| server.execution(&admin, id))
        .collect();
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let all = server.get(EXECUTIONS, &admin).expect(200).json();
    assert_eq!(keys(&all), ["executions", "next_cursor"]);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(ids(all["executions"].as_array().unwrap()), newest_first);

    // Each filter answers exactly the executions that match it, newest first.
    let expect = |query: &str, keep: &dyn Fn(usize, &Value) -> bool| {
        let expected: Vec<String> = (0..created.len())
            .rev()
            .filter(|&i| keep(i, &details[i]))
            .map(|i| created[i].clone())
            .collect();
        let got = ids(&server.all_executions(&admin, query));
        assert_eq!(got, expected, "query {query}");
        got
    };
    let canceled = expect("&status=CANCELED", &|_, e| e["status"] == "CANCELED");
    assert_eq!(canceled.len(), 3);
    expect("&status=PENDENT", &|_, e| e["status"] == "PENDENT");
    assert!(expect("&status=FINISHED", &|_, _| false).is_empty());
    expect(&format!("&robot={a}"), &|i, _| plan[i].1 == &a);
    expect(&format!("&runtime={r2}"), &|i, _| plan[i].0 == &r2);
    let combined = expect(
        &format!("&robot={a}&runtime={r1}&status=PENDENT"),
        &|i, e| plan[i] == (&r1, &a) && e["status"] == "PENDENT",
    );
    assert_eq!(combined.len(), 2);
    let init = |i: usize| details[i]["init"].as_i64().unwrap();
    let pivot = init(4);
    let from = expect(&format!("&from={pivot}"), &|i, _| init(i) >= pivot);
    let to = expect(&format!("&to={pivot}"), &|i, _| init(i) < pivot);
    assert_eq!(
        from.len() + to.len(),
        created.len(),
        "from and to split the list"
    );
    expect(&format!("&from={}&to={}", init(2), init(7)), &|i, _| {
        (init(2)..init(7)).contains(&init(i))
    });
    expect("&from=0&to=1", &|_, _| false);
    expect(&format!("&robot={}", "0123456789abcdef"), &|_, _| false);

    // Paging: every item once, in order, whatever the page size.
    for (limit, query) in [
        (1, String::new()),
        (2, String::new()),
        (3, String::new()),
        (9, String::new()),
        (2, format!("&robot={a}")),
        (2, "&status=PENDENT".to_owned()),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("{EXECUTIONS}?limit={limit}{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = server.get(&path, &admin).expect(200).json();
            let items = page["executions"].as_array().unwrap();
            assert!(items.len() <= limit, "{path}: {} items", items.len());
            seen.extend(ids(items));
            pages += 1;
            assert!(pages <= created.len() + 1, "paging does not end");
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(items.len(), limit, "{path}: a short page with a cursor");
                    cursor = Some(next.to_owned());
                }
                None => break,
            }
        }
        let whole = ids(&server.all_executions(&admin, &query));
        assert_eq!(seen, whole, "limit {limit}{query}");
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "duplicates with limit {limit}{query}"
        );
    }

    // Bad filter values.
    for query in [
        "status=DONE",
        "robot=xyz",
        "runtime=0123456789ABCDEF",
        "from=yesterday",
        "to=1.5",
        "limit=0",
        "limit=501",
        "limit=-3",
        "limit=ten",
        "cursor=abc",
        "sort=init",
    ] {
        let reply = server.get(&format!("{EXECUTIONS}?{query}"), &admin);
        let body = assert_error(&reply, 400, EXECUTIONS);
        let name = query.split('=').next().unwrap();
        assert!(message(&body).contains(name), "{query}: {body}");
    }
}

#[test]
fn root_admins_create_organizations_and_others_get_403() {
    let server = InProcessServer::start();
    let admin = server.admin_token();
    let reply = post_json(
        &server,
        &admin,
        ORGANIZATIONS,
        &json!({"name": "Org B", "admin_username": "admin-b", "admin_password": "admin-b-password"}),
    )
    .expect(201);
    let org = reply.json();
    assert_eq!(keys(&org), ["id", "name"]);
    assert_eq!(org["name"], "Org B");
    assert!(is_execution_id(org["id"].as_str().unwrap()));

    let admin_b = server.login("admin-b", "admin-b-password");
    let users_b = server.get(USERS, &admin_b).expect(200).json();
    assert_eq!(users_b.as_array().unwrap().len(), 1);
    assert_eq!(users_b[0]["username"], "admin-b");
    assert_eq!(users_b[0]["role"], "admin");
    // Org B's admin manages org B but cannot create organisations.
    server.create_user(
        &admin_b,
        "b-integration",
        "b-integration-pass",
        "integration",
    );
    let body =
        json!({"name": "Org C", "admin_username": "admin-c", "admin_password": "admin-c-password"});
    let forbidden = assert_error(
        &post_json(&server, &admin_b, ORGANIZATIONS, &body),
        403,
        ORGANIZATIONS,
    );
    assert!(
        message(&forbidden).contains("first organization"),
        "{forbidden}"
    );
    assert_error(
        &server.login_v1_reply("admin-c", "admin-c-password"),
        401,
        "/api/user/auth",
    );

    // Usernames are unique across organisations; bad bodies answer 400.
    let taken = json!({"name": "Org D", "admin_username": "admin-b", "admin_password": "whatever-password"});
    assert_error(
        &post_json(&server, &admin, ORGANIZATIONS, &taken),
        409,
        ORGANIZATIONS,
    );
    let taken = json!({"name": "Org D", "admin_username": ADMIN_USER, "admin_password": "whatever-password"});
    assert_error(
        &post_json(&server, &admin, ORGANIZATIONS, &taken),
        409,
        ORGANIZATIONS,
    );
    for bad in [
        json!({"name": "", "admin_username": "d", "admin_password": "whatever-password"}),
        json!({"name": "Org D", "admin_username": "d", "admin_password": "short"}),
        json!({"name": "Org D", "admin_username": "d"}),
        json!({"name": "Org D", "admin_username": "", "admin_password": "whatever-password"}),
    ] {
        assert_error(
            &post_json(&server, &admin, ORGANIZATIONS, &bad),
            400,
            ORGANIZATIONS,
        );
    }
    // A second admin of the root organisation may create organisations too.
    server.create_user(&admin, "root-2", "root-2-password", "admin");
    let root_2 = server.login("root-2", "root-2-password");
    post_json(&server, &root_2, ORGANIZATIONS, &body).expect(201);
    server.login("admin-c", "admin-c-password");
}
