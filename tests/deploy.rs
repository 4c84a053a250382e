//! Deploying the bridge: the image (`docker/Dockerfile`), the compose demo (`docker/compose.yaml`
//! with `docker/dovecot-demo/`) and the Kubernetes manifests (`deploy/kubernetes/`).
//!
//! No container engine runs where the tests run, so each piece is proven where it can be: the
//! binary runs with exactly the image's environment and HEALTHCHECK against a real Dovecot; the
//! demo's Dovecot runs from its own configuration and start script, the bridge lists the mail
//! that script seeded, and the README's walk-through runs on it as written; the YAML is parsed
//! (PyYAML from `.venv-tools`) and checked against the image and against itself, and the binary
//! starts with the ConfigMap's settings.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::bridge::{PASSWORD, USER};
use common::dovecot::Dovecot;
use common::tools;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The binary under test, standing in for the one the image copies to its own path.
const BINARY: &str = env!("CARGO_BIN_EXE_imap-bridge");

/// The demo's user, as the README's walk-through logs in.
const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "demo-password";

/// Subjects of `docker/dovecot-demo/seed/*.eml`, newest first (the seeding order).
const DEMO_SUBJECTS: [&str; 5] = [
    "The green we picked",
    "Invoice November 2026",
    "This week: remote images stay blocked",
    "Besprechung am Donnerstag – Raum Süd",
    "Welcome to the imap-bridge demo",
];

/// Where every path of the demo Dovecot's configuration lives inside its container.
const DEMO_ROOT: &str = "/srv/imap-demo";

/// How long a process gets to start listening or to stop.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(15);

const JWT_SECRET: &str = "deploy-test-secret-that-is-at-least-32-bytes";

#[test]
fn the_image_builds_from_pinned_bases_and_runs_unprivileged_with_a_healthcheck() {
    let image = Image::read();
    let [build, runtime] = image.stages.as_slice() else {
        panic!(
            "docker/Dockerfile should have a build and a runtime stage, has {}",
            image.stages.len()
        );
    };
    let demo_dovecot = parse_dockerfile(&read("docker/dovecot-demo/Dockerfile"));
    for stage in image.stages.iter().chain(&demo_dovecot) {
        assert!(
            is_pinned(&stage.image),
            "base image {} names no release (a moving `latest`)",
            stage.image
        );
    }
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("rust-version in Cargo.toml");
    assert!(
        build.image.starts_with(&format!("rust:{rust_version}-")),
        "the build stage {} should use the Rust the crate declares ({rust_version})",
        build.image
    );
    assert_eq!(
        debian_release(&build.image),
        debian_release(&runtime.image),
        "the runtime ({}) must have the glibc the build ({}) linked against",
        runtime.image,
        build.image
    );
    assert!(debian_release(&runtime.image).is_some());
    let build_steps: Vec<&str> = build.all("RUN").collect();
    assert!(
        build_steps
            .iter()
            .any(|run| run.contains("cargo build --release --locked")),
        "the image is a release build from Cargo.lock: {build_steps:?}"
    );
    let copied = runtime
        .all("COPY")
        .find(|args| args.starts_with(&format!("--from={}", build.name.as_deref().unwrap_or("0"))))
        .expect("the runtime stage copies the binary from the build stage");
    assert!(
        copied.ends_with(&image.entrypoint),
        "the entrypoint {} is the binary copied by `COPY {copied}`",
        image.entrypoint
    );

    let user = runtime.last("USER").expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|uid| uid.parse().ok())
        .unwrap_or_else(|| panic!("USER {user} should be numeric, so runAsNonRoot can check it"));
    assert_ne!(uid, 0, "the image runs as root");

    let listen: SocketAddr = image.env["IMAP_BRIDGE_LISTEN"]
        .parse()
        .expect("IMAP_BRIDGE_LISTEN is an address");
    assert!(
        listen.ip().is_unspecified(),
        "the image must listen beyond loopback, not on {listen}"
    );
    assert_eq!(runtime.all("EXPOSE").collect::<Vec<_>>(), ["8080"]);
    assert_eq!(
        listen.port(),
        8080,
        "EXPOSE and IMAP_BRIDGE_LISTEN disagree"
    );

    assert_eq!(
        image.healthcheck.command,
        [image.entrypoint.as_str(), "--healthcheck"],
        "the HEALTHCHECK runs the image's own binary (there is no shell or curl)"
    );
    // The binary gives up after 2 s (HEALTHCHECK_TIMEOUT in src/main.rs), before Docker would.
    assert!(image.healthcheck.timeout > Duration::from_secs(2));
    assert!(
        ships_ca_certificates(runtime),
        "the runtime stage {} has no CA certificates",
        runtime.image
    );
}

#[test]
fn every_setting_the_deployment_files_name_is_one_the_binary_reads() {
    let known = settings_of_binary();
    let pattern = regex::Regex::new(r"IMAP_BRIDGE_[A-Z0-9_]+").expect("pattern");
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for file in files_below(&["docker", "deploy"]) {
        let text = fs::read_to_string(&file).unwrap_or_default();
        for name in pattern.find_iter(&text).map(|m| m.as_str()) {
            used.insert(name.to_owned());
            if !known.contains(name) {
                unknown.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(
        used.len() >= 10,
        "the deployment files should name the settings that matter, found {used:?}"
    );
    assert!(
        unknown.is_empty(),
        "settings the binary does not know (it would ignore them): {unknown:#?}"
    );
}

#[tokio::test]
async fn the_image_environment_serves_a_real_login_and_its_healthcheck_tells_up_from_down() {
    let image = Image::read();
    let dovecot = Dovecot::start();
    dovecot.add_user(USER, PASSWORD);
    let port = free_port();
    let mut env = image.env_on_port(port);
    // What `docker run -e …` adds, as the README's "Deploy" shows.
    env.extend(owned_pairs(&[
        ("IMAP_BRIDGE_IMAP_HOST", "localhost"),
        (
            "IMAP_BRIDGE_IMAP_PORT",
            &dovecot.imaps_addr().port().to_string(),
        ),
        (
            "IMAP_BRIDGE_IMAP_CA_FILE",
            &dovecot.ca_cert_path().display().to_string(),
        ),
        ("IMAP_BRIDGE_JWT_SECRET", JWT_SECRET),
    ]));
    let mut bridge = BridgeProcess::start(&env);

    let listening: Value = serde_json::from_str(&bridge.listening_line)
        .expect("the image's IMAP_BRIDGE_LOG_FORMAT makes JSON log lines");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["listen"], format!("0.0.0.0:{port}"));
    let up = image.run_healthcheck(&env);
    assert!(
        up.output.status.success(),
        "HEALTHCHECK fails on a running bridge: {}",
        describe(&up.output)
    );

    let base = format!("http://127.0.0.1:{port}");
    let token = login(&base, USER, PASSWORD).await;
    let (status, mailboxes) = get_json(&base, &token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{mailboxes}");
    assert!(
        mailbox_names(&mailboxes).contains(&"INBOX".to_owned()),
        "{mailboxes}"
    );

    let exit = bridge.stop();
    assert!(
        exit.success(),
        "`docker stop` sends SIGTERM: the bridge should exit 0, not {exit}\n{}",
        bridge.stderr()
    );
    let down = image.run_healthcheck(&env);
    assert!(
        !down.output.status.success(),
        "HEALTHCHECK passes with no bridge running"
    );
    assert!(
        String::from_utf8_lossy(&down.output.stderr).contains("/healthz"),
        "a failed check says what it asked: {}",
        describe(&down.output)
    );
}

#[test]
fn the_healthcheck_gives_up_on_a_bridge_that_accepts_but_never_answers() {
    let image = Image::read();
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hung.local_addr().expect("address").port();
    let check = image.run_healthcheck(&image.env_on_port(port));
    assert!(
        !check.output.status.success(),
        "a bridge that never answers is healthy?"
    );
    assert!(
        check.elapsed < image.healthcheck.timeout,
        "the check took {:?}, Docker gives it {:?}",
        check.elapsed,
        image.healthcheck.timeout
    );
    drop(hung);
}

#[test]
fn the_healthcheck_asks_for_healthz_and_accepts_nothing_but_200() {
    let image = Image::read();
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = other.local_addr().expect("address").port();
    let server = thread::spawn(move || {
        let (stream, _) = other.accept().expect("accept");
        let mut request_line = String::new();
        BufReader::new(&stream)
            .read_line(&mut request_line)
            .expect("request");
        (&stream)
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
            .expect("answer");
        request_line
    });
    let check = image.run_healthcheck(&image.env_on_port(port));
    assert_eq!(server.join().expect("server"), "GET /healthz HTTP/1.1\r\n");
    assert!(!check.output.status.success(), "503 counted as healthy");
    assert!(
        String::from_utf8_lossy(&check.output.stderr).contains("503"),
        "{}",
        describe(&check.output)
    );
}

#[tokio::test]
async fn the_kubernetes_manifests_probe_limit_and_confine_the_image() {
    let files = files_below(&["deploy/kubernetes"]);
    let Some(documents) = yaml_documents(&files) else {
        return;
    };
    let image = Image::read();
    let one = |kind: &str| -> &Value {
        let found: Vec<&Value> = documents.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "expected one {kind} in deploy/kubernetes");
        found[0]
    };
    let deployment = one("Deployment");
    let service = one("Service");
    let budget = one("PodDisruptionBudget");
    let config_map = one("ConfigMap");

    let pod = &deployment["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(pod_labels.as_object().is_some_and(|l| !l.is_empty()));
    assert!(
        selects(&deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "the Deployment's selector does not match its own pods"
    );
    assert!(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service selects no bridge pod"
    );
    assert!(
        selects(&budget["spec"]["selector"]["matchLabels"], pod_labels),
        "the PodDisruptionBudget protects no bridge pod"
    );
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    let unavailable = budget["spec"]["maxUnavailable"]
        .as_u64()
        .expect("maxUnavailable");
    assert!(
        replicas >= 2 && unavailable >= 1 && unavailable < replicas,
        "{replicas} replicas with maxUnavailable {unavailable}: a drain must be possible and \
         leave one replica serving"
    );

    let spec = &pod["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["runAsUser"], image.uid,
        "the pod runs as the image's user"
    );
    let [container] = spec["containers"]
        .as_array()
        .expect("containers")
        .as_slice()
    else {
        panic!("one container per pod");
    };
    assert!(
        is_pinned(container["image"].as_str().expect("image")),
        "{}",
        container["image"]
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));

    let ports: BTreeMap<String, u64> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name").to_owned(),
                p["containerPort"].as_u64().expect("containerPort"),
            )
        })
        .collect();
    let image_port: SocketAddr = image.env["IMAP_BRIDGE_LISTEN"].parse().expect("address");
    assert_eq!(ports.get("http"), Some(&u64::from(image_port.port())));
    let port_of = |probe: &Value| -> u64 {
        match &probe["httpGet"]["port"] {
            Value::String(name) => ports[name],
            number => number.as_u64().expect("probe port"),
        }
    };
    let liveness = &container["livenessProbe"];
    let readiness = &container["readinessProbe"];
    assert_eq!(liveness["httpGet"]["path"], "/healthz");
    assert_eq!(readiness["httpGet"]["path"], "/readyz");
    assert_eq!(port_of(liveness), ports["http"]);
    assert_eq!(port_of(readiness), ports["http"]);
    // /readyz may take up to 3 s to connect to the IMAP server.
    assert!(readiness["timeoutSeconds"].as_u64().unwrap_or(1) > 3);
    for service_port in service["spec"]["ports"].as_array().expect("service ports") {
        let target = service_port["targetPort"]
            .as_str()
            .expect("named targetPort");
        assert!(
            ports.contains_key(target),
            "Service targets unknown port {target}"
        );
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        ports["metrics"].to_string()
    );

    let resources = &container["resources"];
    let cpu = millicores(&resources["requests"]["cpu"]);
    let memory = mebibytes(&resources["requests"]["memory"]);
    let memory_limit = mebibytes(&resources["limits"]["memory"]);
    assert!(cpu >= 100, "CPU request {cpu}m");
    assert!(
        (128..=memory_limit).contains(&memory),
        "memory request {memory} MiB, limit {memory_limit} MiB"
    );

    let env = container["env"].as_array().expect("env");
    let secret = env
        .iter()
        .find(|e| e["name"] == "IMAP_BRIDGE_JWT_SECRET")
        .expect("the signing secret is set");
    assert!(
        secret.get("value").is_none() && secret["valueFrom"]["secretKeyRef"].is_object(),
        "the signing secret comes from a Secret, never from the manifest"
    );
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        config_map["metadata"]["name"]
    );
    let settings = config_map["data"].as_object().expect("ConfigMap data");
    assert!(!settings.contains_key("IMAP_BRIDGE_JWT_SECRET"));
    let literal_env: Vec<(&str, &Value)> = env
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e.get("value")?)))
        .collect();
    for (name, value) in settings
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .chain(literal_env)
    {
        assert!(
            value.is_string(),
            "{name}: Kubernetes takes only strings here, got {value}"
        );
    }

    // The ConfigMap's values are ones the bridge accepts: it starts with them and answers.
    let port = free_port();
    let mut env = image.env_on_port(port);
    for (name, value) in settings {
        env.push((name.clone(), value.as_str().expect("string").to_owned()));
    }
    env.push(("IMAP_BRIDGE_JWT_SECRET".into(), JWT_SECRET.into()));
    let mut bridge = BridgeProcess::start(&env);
    let check = image.run_healthcheck(&env);
    assert!(check.output.status.success(), "{}", describe(&check.output));
    let live = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(live.status(), StatusCode::OK);
    assert!(bridge.stop().success(), "{}", bridge.stderr());
}

#[tokio::test]
async fn the_compose_demo_dovecot_runs_from_its_own_files_and_the_bridge_lists_its_seeded_mail() {
    let Some(documents) = yaml_documents(&[tools::in_repo("docker/compose.yaml")]) else {
        return;
    };
    if !running_as_root() {
        let why = "the compose demo test starts Dovecot as its container does, which needs root";
        assert!(
            std::env::var_os("IMAP_BRIDGE_REQUIRE_TOOLS").is_none(),
            "{why} (IMAP_BRIDGE_REQUIRE_TOOLS is set, so this is a failure)"
        );
        eprintln!("SKIPPED {why}");
        return;
    }
    let compose = &documents[0];
    let services = &compose["services"];
    let bridge_service = &services["bridge"];
    let dovecot_service = &services["dovecot"];
    assert_eq!(bridge_service["build"]["context"], "..");
    assert_eq!(bridge_service["build"]["dockerfile"], "docker/Dockerfile");
    assert_eq!(dovecot_service["build"], "dovecot-demo");
    assert_eq!(
        bridge_service["depends_on"]["dovecot"]["condition"],
        "service_healthy"
    );
    let image = Image::read();
    let published = bridge_service["ports"][0].as_str().expect("published port");
    assert_eq!(
        published.rsplit(':').next(),
        Some("8080"),
        "compose publishes the port the image listens on"
    );
    let compose_env: BTreeMap<String, String> = bridge_service["environment"]
        .as_object()
        .expect("bridge environment")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
        .collect();
    let host = &compose_env["IMAP_BRIDGE_IMAP_HOST"];
    assert!(
        services.get(host).is_some(),
        "IMAP_BRIDGE_IMAP_HOST {host} is no compose service"
    );
    assert_eq!(compose_env["IMAP_BRIDGE_IMAP_SECURITY"], "tls");
    assert_eq!(
        compose_env["IMAP_BRIDGE_IMAP_PORT"], "993",
        "the bridge uses dovecot.conf's imaps listener"
    );
    assert!(compose_env["IMAP_BRIDGE_JWT_SECRET"].len() >= 32);
    // The CA file lies in a volume that Dovecot's container writes at DEMO_ROOT/certs.
    let ca_file = &compose_env["IMAP_BRIDGE_IMAP_CA_FILE"];
    let (volume, bridge_mount) = mount_holding(bridge_service, ca_file);
    let dovecot_mount = mounts(dovecot_service)
        .into_iter()
        .find(|(v, _)| *v == volume)
        .map(|(_, target)| target)
        .unwrap_or_else(|| panic!("Dovecot does not mount the volume {volume}"));
    assert_eq!(dovecot_mount, format!("{DEMO_ROOT}/certs"));
    let ca_name = Path::new(ca_file)
        .strip_prefix(&bridge_mount)
        .expect("CA file below its mount");

    let demo = DemoDovecot::start();
    let certs = demo.root().join("certs");
    let shared: Vec<String> = fs::read_dir(&certs)
        .expect("certs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        shared,
        [ca_name.display().to_string()],
        "the bridge's volume holds the CA certificate and nothing else (no key)"
    );
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(certs.join(ca_name))
        .args(["-verify_hostname", host])
        .arg(demo.root().join("private/server.pem"))
        .output()
        .expect("openssl");
    assert!(
        verify.status.success(),
        "Dovecot's certificate does not verify for {host}: {}",
        describe(&verify)
    );
    let doveconf = Command::new("/usr/bin/doveconf")
        .arg("-n")
        .arg("-c")
        .arg(demo.conf())
        .output()
        .expect("doveconf");
    assert!(
        doveconf.status.success() && doveconf.stderr.is_empty(),
        "dovecot.conf is not clean: {}",
        describe(&doveconf)
    );
    let health = demo.run_image_healthcheck();
    assert!(
        health.status.success(),
        "the demo Dovecot image's HEALTHCHECK fails: {}",
        describe(&health)
    );

    // The bridge with the compose environment; "dovecot" does not resolve here, and the
    // certificate names "localhost" too.
    let port = free_port();
    let mut env = image.env_on_port(port);
    for (name, value) in &compose_env {
        let value = match name.as_str() {
            "IMAP_BRIDGE_IMAP_HOST" => "localhost".to_owned(),
            "IMAP_BRIDGE_IMAP_PORT" => demo.imaps_port.to_string(),
            "IMAP_BRIDGE_IMAP_CA_FILE" => certs.join(ca_name).display().to_string(),
            _ => value.clone(),
        };
        env.push((name.clone(), value));
    }
    let mut bridge = BridgeProcess::start(&env);
    let base = format!("http://127.0.0.1:{port}");
    let token = login(&base, DEMO_USER, DEMO_PASSWORD).await;
    let (status, mailboxes) = get_json(&base, &token, "/v1/mailboxes").await;
    assert_eq!(status, StatusCode::OK, "{mailboxes}");
    let roles: BTreeSet<&str> = mailboxes["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .filter_map(|m| m["special_use"].as_str())
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from(["inbox", "drafts", "sent", "trash", "junk", "archive"]),
        "{mailboxes}"
    );
    let (status, page) = get_json(&base, &token, "/v1/mailboxes/INBOX/messages").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let subjects: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(subjects, DEMO_SUBJECTS, "the seeded INBOX, newest first");
    let invoice = &page["messages"][1]["uid"];
    let (status, message) = get_json(
        &base,
        &token,
        &format!("/v1/mailboxes/INBOX/messages/{invoice}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(
        (
            &message["attachments"][0]["part_id"],
            &message["attachments"][0]["filename"]
        ),
        (&json!("2"), &json!("invoice-2026-11.csv")),
        "the invoice's text points at attachments/2"
    );
    // The README's walk-through works on this mail too, exactly as written, and saves the
    // invoice's CSV under its own name.
    let walkthrough_base = base.clone();
    let walked = tokio::task::spawn_blocking(move || {
        let report = common::walkthrough::run(&walkthrough_base)?;
        common::walkthrough::check(&report)
    })
    .await
    .expect("walk-through thread");
    let shown = walked
        .unwrap_or_else(|why| panic!("the README's walk-through fails on the compose demo: {why}"));
    assert_eq!(shown.saved_file.0, "invoice-2026-11.csv");
    assert_eq!(
        String::from_utf8_lossy(&shown.saved_file.1),
        "date,item,amount\n2026-11-01,imap-bridge hosting,42.00\n2026-11-01,Support,18.00\n"
    );
    assert!(bridge.stop().success(), "{}", bridge.stderr());
}

// ---------------------------------------------------------------------------------------------
// The image, read from docker/Dockerfile.

/// One instruction: its keyword (upper case) and the rest of its logical line.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its base image, its `AS` name and the instructions after its FROM.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &'static str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    fn last(&self, keyword: &'static str) -> Option<&str> {
        self.all(keyword).last()
    }
}

/// The HEALTHCHECK of a stage.
#[derive(Debug)]
struct Healthcheck {
    timeout: Duration,
    command: Vec<String>,
}

/// What the tests need to know about the image.
struct Image {
    stages: Vec<Stage>,
    /// The runtime stage's ENV.
    env: BTreeMap<String, String>,
    entrypoint: String,
    healthcheck: Healthcheck,
    uid: u32,
}

/// The outcome of one HEALTHCHECK run.
struct Check {
    output: Output,
    elapsed: Duration,
}

impl Image {
    fn read() -> Self {
        let stages = parse_dockerfile(&read("docker/Dockerfile"));
        let runtime = stages.last().expect("a stage");
        let mut env = BTreeMap::new();
        for args in runtime.all("ENV") {
            for pair in args.split_whitespace() {
                let (name, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {args}: write NAME=value pairs"));
                env.insert(name.to_owned(), value.to_owned());
            }
        }
        let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT"));
        let healthcheck = parse_healthcheck(runtime.last("HEALTHCHECK").expect("HEALTHCHECK"));
        let uid = runtime
            .last("USER")
            .and_then(|user| user.split(':').next()?.parse().ok())
            .expect("a numeric USER");
        Self {
            env,
            entrypoint: entrypoint[0].clone(),
            healthcheck,
            uid,
            stages,
        }
    }

    /// The image's environment, listening on `port` instead of the image's port (tests run
    /// side by side), on the same unspecified address.
    fn env_on_port(&self, port: u16) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(name, value)| {
                let value = if name == "IMAP_BRIDGE_LISTEN" {
                    let addr: SocketAddr = value.parse().expect("IMAP_BRIDGE_LISTEN");
                    SocketAddr::new(addr.ip(), port).to_string()
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// Runs the HEALTHCHECK command as written, the image's binary path mapped to the one
    /// under test, with `env` as the container's environment (Docker runs checks with it).
    fn run_healthcheck(&self, env: &[(String, String)]) -> Check {
        let command = &self.healthcheck.command;
        assert_eq!(command[0], self.entrypoint);
        let started = Instant::now();
        let output = run_with_deadline(
            Command::new(BINARY)
                .args(&command[1..])
                .env_clear()
                .envs(env.iter().cloned()),
            Duration::from_secs(10),
        );
        Check {
            output,
            elapsed: started.elapsed(),
        }
    }
}

/// Stages of a Dockerfile: continuation lines joined, comments and the syntax directive dropped.
fn parse_dockerfile(text: &str) -> Vec<Stage> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends in a continued line"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let (keyword, args) = line.split_once(' ').unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_] => None,
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                _ => panic!("cannot read FROM {args}"),
            };
            stages.push(Stage {
                image: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{keyword} before any FROM"))
                .instructions
                .push(Instruction { keyword, args });
        }
    }
    stages
}

fn parse_healthcheck(args: &str) -> Healthcheck {
    let (options, command) = args
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK {args}: expected options and CMD"));
    let timeout = options
        .split_whitespace()
        .find_map(|o| o.strip_prefix("--timeout="))
        .map(|t| {
            let seconds = t.strip_suffix('s').expect("a timeout in seconds");
            Duration::from_secs(seconds.parse().expect("seconds"))
        })
        .expect("HEALTHCHECK --timeout (Docker's default is 30 s)");
    Healthcheck {
        timeout,
        command: exec_form(command),
    }
}

/// A JSON array instruction argument (exec form: no shell, which the runtime image lacks).
fn exec_form(args: &str) -> Vec<String> {
    let words: Vec<String> = serde_json::from_str(args.trim())
        .unwrap_or_else(|e| panic!("{args} is not exec form (a JSON array): {e}"));
    assert!(!words.is_empty(), "empty command");
    words
}

/// A base image with a release: a digest, or a tag other than `latest`.
fn is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    name.split_once(':')
        .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest")
}

/// The Debian release an image is built on, from its name.
fn debian_release(image: &str) -> Option<u32> {
    [
        ("bullseye", 11),
        ("debian11", 11),
        ("bookworm", 12),
        ("debian12", 12),
        ("trixie", 13),
        ("debian13", 13),
    ]
    .into_iter()
    .find(|(name, _)| image.contains(name))
    .map(|(_, release)| release)
}

/// The stage's filesystem has the CA bundle: distroless static, base and cc images ship
/// Debian's ca-certificates; otherwise the stage must install or copy it.
fn ships_ca_certificates(stage: &Stage) -> bool {
    let distroless = ["static-debian", "base-debian", "cc-debian"]
        .iter()
        .any(|flavour| {
            stage
                .image
                .starts_with(&format!("gcr.io/distroless/{flavour}"))
        });
    distroless
        || stage.all("RUN").any(|run| run.contains("ca-certificates"))
        || stage
            .all("COPY")
            .any(|copy| copy.contains("ca-certificates.crt"))
}

// ---------------------------------------------------------------------------------------------
// The binary as a process.

/// The `imap-bridge` binary run as the container runs it: only the given environment.
struct BridgeProcess {
    child: Child,
    /// The log line announcing the listener.
    listening_line: String,
    stderr: Arc<Mutex<String>>,
}

impl BridgeProcess {
    /// Starts the binary with exactly `env` and waits until it logs that it listens.
    fn start(env: &[(String, String)]) -> Self {
        let mut child = Command::new(BINARY)
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imap-bridge");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            sink.lock().expect("stderr").push_str(&text);
        });
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("imap-bridge listening") => {
                    return Self {
                        child,
                        listening_line: line,
                        stderr,
                    };
                }
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().expect("wait");
                    thread::sleep(Duration::from_millis(50));
                    panic!(
                        "imap-bridge did not start ({status}):\n{}\n{}",
                        seen.join("\n"),
                        stderr.lock().expect("stderr")
                    );
                }
            }
        }
    }

    /// SIGTERM, as `docker stop` and Kubernetes send, and the exit status.
    fn stop(&mut self) -> ExitStatus {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(term.success());
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "imap-bridge ignores SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every `IMAP_BRIDGE_*` variable `imap-bridge --help` lists.
fn settings_of_binary() -> BTreeSet<String> {
    let help = Command::new(BINARY)
        .arg("--help")
        .env_clear()
        .output()
        .expect("imap-bridge --help");
    assert!(help.status.success(), "{}", describe(&help));
    let pattern = regex::Regex::new(r"\[env: (IMAP_BRIDGE_[A-Z0-9_]+)").expect("pattern");
    let names: BTreeSet<String> = pattern
        .captures_iter(&String::from_utf8_lossy(&help.stdout))
        .map(|c| c[1].to_owned())
        .collect();
    assert!(names.contains("IMAP_BRIDGE_LISTEN"), "{names:?}");
    names
}

/// Runs `command`, killing it and failing after `limit`.
fn run_with_deadline(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("{command:?} ran over {limit:?}: {}", describe(&output));
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

// ---------------------------------------------------------------------------------------------
// The compose demo's Dovecot, run from docker/dovecot-demo/ outside a container.

/// The demo Dovecot started by its own `entrypoint.sh`, with `DEMO_ROOT` moved into a
/// temporary directory, its ports moved to free ones and its mail owner to Debian's `dovecot`
/// user (the image's `vmail` does not exist here).
struct DemoDovecot {
    root: TempDir,
    imaps_port: u16,
    child: Child,
}

impl DemoDovecot {
    fn start() -> Self {
        let root = tempfile::Builder::new()
            .prefix("imap-demo-")
            .tempdir()
            .expect("temporary directory");
        // Dovecot's unprivileged processes reach the mail below it.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let conf = root.path().join("conf");
        fs::create_dir_all(conf.join("seed")).expect("conf directory");
        let source = tools::in_repo("docker/dovecot-demo");
        for file in ["users", "entrypoint.sh"] {
            fs::copy(source.join(file), conf.join(file)).expect("copy demo file");
        }
        for entry in fs::read_dir(source.join("seed")).expect("seed directory") {
            let path = entry.expect("seed entry").path();
            fs::copy(
                &path,
                conf.join("seed").join(path.file_name().expect("name")),
            )
            .expect("copy seed message");
        }
        let (imap_port, imaps_port) = (free_port(), free_port());
        let mut text = read("docker/dovecot-demo/dovecot.conf");
        for (container, here) in [
            (DEMO_ROOT, root.path().display().to_string()),
            ("port = 143", format!("port = {imap_port}")),
            ("port = 993", format!("port = {imaps_port}")),
            ("uid=vmail gid=vmail", "uid=dovecot gid=dovecot".to_owned()),
            ("listen = *", "listen = 127.0.0.1".to_owned()),
        ] {
            assert!(
                text.contains(container),
                "dovecot.conf has no {container:?}"
            );
            text = text.replace(container, &here);
        }
        // Debian's `dovecot` user is a system user, below Dovecot's default first_valid_uid.
        text.push_str("first_valid_uid = 1\n");
        fs::write(conf.join("dovecot.conf"), text).expect("write dovecot.conf");
        let log = fs::File::create(root.path().join("demo.log")).expect("log");
        let child = Command::new("sh")
            .arg(conf.join("entrypoint.sh"))
            .env("IMAP_DEMO_ROOT", root.path())
            .env("IMAP_DEMO_MAIL_OWNER", "dovecot")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn entrypoint.sh");
        let mut demo = Self {
            root,
            imaps_port,
            child,
        };
        demo.wait_for_greeting(imap_port);
        demo
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn conf(&self) -> PathBuf {
        self.root().join("conf/dovecot.conf")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.root().join("demo.log")).unwrap_or_default()
    }

    fn wait_for_greeting(&mut self, port: u16) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("the demo Dovecot exited ({status}):\n{}", self.log());
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("the demo Dovecot never greeted:\n{}", self.log());
    }

    /// The demo image's HEALTHCHECK, its paths moved like the configuration's.
    fn run_image_healthcheck(&self) -> Output {
        let stages = parse_dockerfile(&read("docker/dovecot-demo/Dockerfile"));
        let check = parse_healthcheck(
            stages
                .last()
                .and_then(|s| s.last("HEALTHCHECK"))
                .expect("the demo Dovecot image has a HEALTHCHECK"),
        );
        let here = self.root().display().to_string();
        let command: Vec<String> = check
            .command
            .iter()
            .map(|word| word.replace(DEMO_ROOT, &here))
            .collect();
        run_with_deadline(
            Command::new(&command[0])
                .args(&command[1..])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            check.timeout,
        )
    }
}

impl Drop for DemoDovecot {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// YAML, HTTP and small helpers.

/// Every YAML document of `files`, as JSON, read by PyYAML from `.venv-tools` (installed with
/// Schemathesis by scripts/setup); `None` when it is missing and tools are not required.
fn yaml_documents(files: &[PathBuf]) -> Option<Vec<Value>> {
    let python = tools::in_repo(".venv-tools/bin/python");
    tools::require("deployment YAML", std::slice::from_ref(&python))?;
    let output = Command::new(python)
        .arg("-c")
        .arg(
            "import json, sys, yaml\n\
             docs = [d for p in sys.argv[1:] for d in yaml.safe_load_all(open(p, encoding='utf-8'))]\n\
             print(json.dumps([d for d in docs if d is not None]))",
        )
        .args(files)
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "YAML does not parse: {}",
        describe(&output)
    );
    let documents: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON from python");
    assert!(!documents.is_empty(), "no YAML documents in {files:?}");
    Some(documents)
}

/// `labels` carries every `key: value` of `selector`, which selects something.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// `(volume, target)` of each `volume:target[:mode]` mount of a compose service.
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|m| {
            let mut parts = m.as_str().expect("short volume syntax").split(':');
            let volume = parts.next().expect("volume").to_owned();
            let target = parts.next().expect("target").to_owned();
            (volume, target)
        })
        .collect()
}

/// The mount of `service` below which `path` lies.
fn mount_holding(service: &Value, path: &str) -> (String, String) {
    mounts(service)
        .into_iter()
        .find(|(_, target)| Path::new(path).starts_with(target))
        .unwrap_or_else(|| panic!("{path} is on no volume of the service"))
}

/// A Kubernetes CPU quantity in millicores.
fn millicores(quantity: &Value) -> u64 {
    let text = quantity.as_str().expect("CPU quantity as a string");
    match text.strip_suffix('m') {
        Some(milli) => milli.parse().expect("millicores"),
        None => text.parse::<u64>().expect("cores") * 1000,
    }
}

/// A Kubernetes memory quantity in MiB.
fn mebibytes(quantity: &Value) -> u64 {
    let text = quantity.as_str().expect("memory quantity as a string");
    if let Some(mi) = text.strip_suffix("Mi") {
        mi.parse().expect("MiB")
    } else if let Some(gi) = text.strip_suffix("Gi") {
        gi.parse::<u64>().expect("GiB") * 1024
    } else {
        panic!("write memory as Mi or Gi, not {text}")
    }
}

async fn login(base: &str, user: &str, password: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login request");
    let status = response.status();
    let body: Value = response.json().await.expect("login body");
    assert_eq!(status, StatusCode::OK, "login as {user}: {body}");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn get_json(base: &str, token: &str, path: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

fn mailbox_names(list: &Value) -> Vec<String> {
    list["mailboxes"]
        .as_array()
        .expect("mailboxes")
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect()
}

fn owned_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn read(relative: &str) -> String {
    let path = tools::in_repo(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file below the given repository directories.
fn files_below(dirs: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = dirs.iter().map(|d| tools::in_repo(d)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(
                fs::read_dir(&path)
                    .expect("directory")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            files.push(path);
        }
    }
    files.sort();
    assert!(!files.is_empty(), "nothing below {dirs:?}");
    files
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
