"""Project-specific checks of compose/, keycloak/ and kumori/, run by
compose/validate.sh after the generic validators (compose schema, hadolint,
shellcheck, cue). Each sub-command prints one line per problem and exits 1
if there was any.

  checks.py compose    ROOT COMPOSE_JSON SCRIPTS_DIR
  checks.py dockerfile ROOT
  checks.py realm      ROOT COMPOSE_JSON
  checks.py kumori     ROOT SYSTEM_JSON SECURITY_JSON

COMPOSE_JSON is `docker-compose config --format json`; SYSTEM_JSON and
SECURITY_JSON are `cue export` of kumori/deployments/{system,security}.
"""

import json
import os
import re
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

PROBLEMS = []

# The Lanzadera services and the crate each one runs.
SERVICES = ("frontend", "worker", "observer")
# Read by tracing-subscriber's EnvFilter, not by our settings code.
# Backing services configured for a single node: one instance only.
SINGLE_INSTANCE = {"observer", "kafka", "mongodb", "minio", "postgres", "keycloak"}


def problem(where, text):
    PROBLEMS.append(f"{where}: {text}")


def finish(what):
    for p in PROBLEMS:
        print(f"  FAIL {p}")
    if PROBLEMS:
        print(f"{what}: {len(PROBLEMS)} problem(s)")
        sys.exit(1)
    print(f"{what}: ok")


# ------------------------------------------------------------------ code --


def code_env(root):
    """Crate name -> every environment variable its binary reads, from
    docs/settings.json, which is generated from the settings declarations
    in the code (a Rust test fails when it is out of date)."""
    path = root / "docs/settings.json"
    settings = json.loads(path.read_text())["settings"]
    letters = {"frontend": "F", "worker": "W", "observer": "O"}
    return {crate: {s["name"] for s in settings if letters[crate] in s["services"]} for crate in SERVICES}


def check_env_names(where, crate, names, code):
    if not any(n.startswith("LZ_") for n in code[crate]):
        problem(where, f"docs/settings.json lists no LZ_* variable for {crate}")
        return
    for name in sorted(names):
        if name not in code[crate]:
            problem(where, f"sets {name}, which {crate} never reads")


# --------------------------------------------------------------- compose --


def env_file(path):
    values = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not m:
            problem(f"{path.name}:{n}", f"not NAME=value: {line!r}")
            continue
        values[m.group(1)] = m.group(2)
    return values


VAR_REF = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")


def image_pinned(image):
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def url_host(url):
    return urlparse(url).hostname or ""


def cmd_compose(root, compose_json, scripts_dir):
    root = Path(root)
    compose_yml = root / "compose/docker-compose.yml"
    env_path = root / "compose/.env"
    dotenv = env_file(env_path)
    raw = compose_yml.read_text()
    model = json.loads(Path(compose_json).read_text())
    services = model["services"]
    code = code_env(root)

    # Every ${VAR} is defined in .env, every .env entry is used.
    used = set()
    for n, line in enumerate(raw.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for m in VAR_REF.finditer(line.replace("$$", "")):
            name = m.group(1) or m.group(2)
            used.add(name)
            if name not in dotenv:
                problem(f"docker-compose.yml:{n}", f"${{{name}}} is not defined in .env")
    for name in sorted(set(dotenv) - used):
        if not name.startswith("COMPOSE_"):
            problem(".env", f"{name} is not used by docker-compose.yml")

    for name in ("kafka", "kafka-init", "mongodb", "minio", "minio-init",
                 "postgres", "keycloak", *SERVICES):
        if name not in services:
            problem("docker-compose.yml", f"service {name} is missing")
    if PROBLEMS:
        finish("compose checks")

    # Images and builds.
    dockerfile_targets = {}
    for name, svc in services.items():
        where = f"service {name}"
        build = svc.get("build")
        if build:
            dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problem(where, f"Dockerfile {dockerfile} does not exist")
            else:
                dockerfile_targets.setdefault(dockerfile, set()).add(build.get("target"))
            if not build.get("target"):
                problem(where, "build has no target")
            if not svc.get("image"):
                problem(where, "a built service needs an image name")
        elif not image_pinned(svc.get("image", "")):
            problem(where, f"image {svc.get('image')!r} is not pinned to a tag or digest")
    for dockerfile, targets in dockerfile_targets.items():
        stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text()))
        for t in sorted(filter(None, targets)):
            if t not in stages:
                problem(str(dockerfile.relative_to(root)), f"no stage named {t} (compose builds it)")

    # Environment of our services: only variables the code reads.
    for name in SERVICES:
        env = services[name].get("environment") or {}
        check_env_names(f"service {name}", name, env, code)

    # Health checks and start order.
    one_shot = {n for n, s in services.items() if s.get("restart") == "no"}
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if name not in one_shot and name != "worker" and (not hc or hc.get("disable")):
            problem(f"service {name}", "long-running service without a health check")
        for dep, spec in (svc.get("depends_on") or {}).items():
            cond = spec.get("condition")
            if dep not in services:
                problem(f"service {name}", f"depends on unknown service {dep}")
            elif cond == "service_healthy" and not services[dep].get("healthcheck"):
                problem(f"service {name}", f"waits for {dep} to be healthy, which has no health check")
            elif cond == "service_completed_successfully" and dep not in one_shot:
                problem(f"service {name}", f"waits for {dep} to complete, but {dep} is not a one-shot (restart: \"no\")")
            elif cond == "service_started":
                problem(f"service {name}", f"depends on {dep} without waiting for it (service_started)")
    needs = {
        "LZ_KAFKA_BROKERS": ("kafka-init", "service_completed_successfully"),
        "LZ_MONGO_URI": ("mongodb", "service_healthy"),
        "LZ_S3_ENDPOINT": ("minio-init", "service_completed_successfully"),
        "LZ_OIDC_ISSUER": ("keycloak", "service_healthy"),
    }
    for name in SERVICES:
        env = services[name].get("environment") or {}
        deps = services[name].get("depends_on") or {}
        for var, (dep, cond) in needs.items():
            if var in env and deps.get(dep, {}).get("condition") != cond:
                problem(f"service {name}", f"uses {var} but does not wait for {dep} ({cond})")

    # The values the services use agree with the backing services.
    kafka_env = services["kafka"]["environment"]
    init_env = services["kafka-init"]["environment"]
    advertised = kafka_env.get("KAFKA_ADVERTISED_LISTENERS", "")
    advertised_hosts = {urlparse(u.strip()).netloc for u in advertised.split(",") if u.strip()}
    mongo_env = services["mongodb"]["environment"]
    minio_env = services["minio-init"]["environment"]
    for name in SERVICES:
        env = services[name].get("environment") or {}
        where = f"service {name}"
        if "LZ_KAFKA_BROKERS" in env:
            for broker in env["LZ_KAFKA_BROKERS"].split(","):
                if broker.strip() not in advertised_hosts:
                    problem(where, f"broker {broker} is not one kafka advertises ({advertised})")
        for var, init_var in (("LZ_JOBS_TOPIC", "JOBS_TOPIC"), ("LZ_STATUS_TOPIC", "STATUS_TOPIC"),
                              ("LZ_IGNORE_TOPIC", "IGNORE_TOPIC"), ("LZ_JOBS_PARTITIONS", "JOBS_PARTITIONS"),
                              ("LZ_STATUS_PARTITIONS", "STATUS_PARTITIONS")):
            if var in env and env[var] != init_env.get(init_var):
                problem(where, f"{var}={env[var]} but kafka-init uses {init_env.get(init_var)}")
        if "LZ_MONGO_URI" in env:
            uri = urlparse(env["LZ_MONGO_URI"])
            if uri.hostname not in services:
                problem(where, f"LZ_MONGO_URI host {uri.hostname} is not a service")
            if (uri.username, uri.password) != (mongo_env.get("MONGO_APP_USER"), mongo_env.get("MONGO_APP_PASSWORD")):
                problem(where, "LZ_MONGO_URI credentials differ from mongodb's MONGO_APP_USER / MONGO_APP_PASSWORD")
            if uri.path.lstrip("/") != env.get("LZ_MONGO_DB") or env.get("LZ_MONGO_DB") != mongo_env.get("MONGO_INITDB_DATABASE"):
                problem(where, "LZ_MONGO_DB, the URI's database and mongodb's MONGO_INITDB_DATABASE differ")
        if "LZ_S3_ENDPOINT" in env:
            if url_host(env["LZ_S3_ENDPOINT"]) != "minio":
                problem(where, f"LZ_S3_ENDPOINT {env['LZ_S3_ENDPOINT']} is not the minio service")
            for var, init_var in (("LZ_S3_BUCKET", "S3_BUCKET"), ("LZ_S3_ACCESS_KEY", "S3_ACCESS_KEY"),
                                  ("LZ_S3_SECRET_KEY", "S3_SECRET_KEY")):
                if env.get(var) != minio_env.get(init_var):
                    problem(where, f"{var} differs from minio-init's {init_var}")
        for addr_var, port in (("LZ_HTTP_ADDR", None), ("LZ_OBSERVER_ADDR", None)):
            if addr_var in env and not env[addr_var].startswith("0.0.0.0:"):
                problem(where, f"{addr_var}={env[addr_var]} is not reachable from other containers")

    # Worker replicas within the observer's bounds.
    replicas = (services["worker"].get("deploy") or {}).get("replicas")
    obs_env = services["observer"]["environment"]
    try:
        lo, hi = int(obs_env["LZ_MIN_WORKERS"]), int(obs_env["LZ_MAX_WORKERS"])
        if not isinstance(replicas, int) or not lo <= replicas <= hi:
            problem("service worker", f"deploy.replicas={replicas!r} is not within LZ_MIN_WORKERS..LZ_MAX_WORKERS ({lo}..{hi})")
    except (KeyError, ValueError) as e:
        problem("service observer", f"LZ_MIN_WORKERS / LZ_MAX_WORKERS unusable: {e}")
    if "container_name" in services["worker"]:
        problem("service worker", "container_name prevents replicas")

    # Host side of mounts exists; published ports are unique.
    seen_ports = {}
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            if vol.get("type") == "bind" and not Path(vol["source"]).exists():
                problem(f"service {name}", f"bind mount source {vol['source']} does not exist")
            if vol.get("type") == "volume" and vol.get("source") not in (model.get("volumes") or {}):
                problem(f"service {name}", f"volume {vol.get('source')} is not declared")
        for port in svc.get("ports") or []:
            key = (port.get("host_ip"), str(port.get("published")))
            if key in seen_ports:
                problem(f"service {name}", f"host port {key[1]} is also published by {seen_ports[key]}")
            seen_ports[key] = name

    # Shell scripts inside the compose file, for shellcheck.
    scripts = Path(scripts_dir)
    scripts.mkdir(parents=True, exist_ok=True)
    unescape = lambda s: s.replace("$$", "$")
    for name, svc in services.items():
        entry = svc.get("entrypoint") or []
        command = svc.get("command") or []
        if len(entry) == 2 and entry[0] in ("/bin/sh", "/bin/bash", "sh", "bash") and entry[1].startswith("-") and "c" in entry[1]:
            shell = "bash" if entry[0].endswith("bash") else "sh"
            (scripts / f"{name}.command.{shell}").write_text(f"#!/usr/bin/env {shell}\n{unescape(command[0])}\n")
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD-SHELL"]:
            (scripts / f"{name}.healthcheck.sh").write_text(f"#!/bin/sh\n{unescape(test[1])}\n")
        elif test[:3] == ["CMD", "bash", "-c"]:
            (scripts / f"{name}.healthcheck.bash").write_text(f"#!/usr/bin/env bash\n{unescape(test[3])}\n")
    finish("compose checks")


# ------------------------------------------------------------ dockerfile --


def dockerignore_patterns(path):
    if not path.is_file():
        return []
    return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def cmd_dockerfile(root):
    import dockerfile as dockerfile_parser  # the Go (BuildKit) parser

    root = Path(root)
    path = root / "compose/Dockerfile"
    code = code_env(root)
    cmds = dockerfile_parser.parse_file(str(path))
    args, stages, current = {}, {}, None
    for c in cmds:
        if c.cmd == "ARG" and current is None:
            name, _, default = c.value[0].partition("=")
            args[name] = default.strip('"')
        elif c.cmd == "FROM":
            base = c.value[0]
            for k, v in args.items():
                base = base.replace("${" + k + "}", v)
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else f"#{len(stages)}"
            current = stages[name] = {"base": base, "cmds": [], "line": c.start_line}
        elif current is not None:
            current["cmds"].append(c)

    def inherited(stage):
        chain = []
        while stage in stages:
            chain.append(stage)
            stage = stages[stage]["base"]
        return chain

    for name, st in stages.items():
        base = st["base"]
        if base not in stages and not image_pinned(base):
            problem(f"Dockerfile:{st['line']}", f"base image {base} of stage {name} is not pinned")

    ignored = dockerignore_patterns(root / "compose/Dockerfile.dockerignore")
    for name, st in stages.items():
        for c in st["cmds"]:
            where = f"Dockerfile:{c.start_line}"
            if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags):
                for src in c.value[:-1]:
                    if src != "." and not (root / src).exists():
                        problem(where, f"{c.cmd} source {src} does not exist in the build context")
                    if src in ignored:
                        problem(where, f"{c.cmd} source {src} is excluded by Dockerfile.dockerignore")
            if c.cmd == "COPY" and any(f.startswith("--from=") for f in c.flags):
                frm = next(f for f in c.flags if f.startswith("--from="))[7:]
                if frm not in stages and not image_pinned(frm):
                    problem(where, f"COPY --from={frm}: neither a stage nor a pinned image")

    for target in (*SERVICES, "keycloak"):
        if target not in stages:
            problem("Dockerfile", f"no stage {target}")
            continue
        chain = inherited(target)
        all_cmds = [c for s in reversed(chain) for c in stages[s]["cmds"]]
        users = [c.value[0] for c in all_cmds if c.cmd == "USER"]
        if not users or users[-1].split(":")[0] in ("0", "root"):
            problem(f"Dockerfile stage {target}", "does not end as a non-root USER")
        if target == "keycloak":
            continue
        entry = [c for c in all_cmds if c.cmd == "ENTRYPOINT"]
        if not entry or not entry[-1].json:
            problem(f"Dockerfile stage {target}", "needs an exec-form ENTRYPOINT (signals reach the service)")
        elif f"/usr/local/bin/lanzadera-{target}" not in entry[-1].value:
            problem(f"Dockerfile stage {target}", f"ENTRYPOINT does not run lanzadera-{target}")
        if stages[chain[-1]]["base"].split(":")[0] != "debian" or "slim" not in stages[chain[-1]]["base"]:
            problem(f"Dockerfile stage {target}", f"runtime base is {stages[chain[-1]]['base']}, not debian slim")
        env = {}
        for c in all_cmds:
            if c.cmd == "ENV":
                env.update(dict(zip(c.value[::2], c.value[1::2])))
        check_env_names(f"Dockerfile stage {target} ENV", target, [k for k in env if k not in ("NPM_CONFIG_UPDATE_NOTIFIER", "NPM_CONFIG_FUND")], code)
        text = " ".join(" ".join(c.value) for c in all_cmds)
        if target == "worker":
            for need in ("git", "tini", "/usr/local/bin/node", "npm-cli.js"):
                if need not in text:
                    problem("Dockerfile stage worker", f"does not install {need}")
    builder = stages.get("builder")
    if not builder:
        problem("Dockerfile", "no builder stage")
    else:
        text = " ".join(" ".join(c.value) for c in builder["cmds"])
        for crate in SERVICES:
            if f"-p lanzadera-{crate}" not in text:
                problem("Dockerfile stage builder", f"does not build lanzadera-{crate}")
        if "--release" not in text:
            problem("Dockerfile stage builder", "does not build --release")
    finish("Dockerfile checks")


# ----------------------------------------------------------------- realm --


def cmd_realm(root, compose_json):
    root = Path(root)
    path = root / "keycloak/lanzadera-realm.json"
    try:
        realm = json.loads(path.read_text())
    except ValueError as e:
        problem(str(path), f"not valid JSON: {e}")
        finish("realm checks")
    services = json.loads(Path(compose_json).read_text())["services"]
    where = "keycloak/lanzadera-realm.json"
    if realm.get("realm") != "lanzadera" or realm.get("enabled") is False:
        problem(where, "realm lanzadera is missing or disabled")
    if not isinstance(realm.get("accessTokenLifespan"), int) or realm["accessTokenLifespan"] <= 0:
        problem(where, "accessTokenLifespan must be a positive number of seconds")
    roles = {r.get("name") for r in (realm.get("roles") or {}).get("realm", [])}
    for role in ("user", "operator"):
        if role not in roles:
            problem(where, f"realm role {role} is missing")
    groups = {g.get("path") for g in realm.get("groups") or []}
    if "/example-users" not in groups:
        problem(where, "group /example-users (marks the example users) is missing")

    fe = services["frontend"]["environment"]
    clients = {c.get("clientId"): c for c in realm.get("clients") or []}
    client = clients.get(fe.get("LZ_OIDC_CLIENT_ID"))
    if not client:
        problem(where, f"no client {fe.get('LZ_OIDC_CLIENT_ID')} (the frontend's LZ_OIDC_CLIENT_ID)")
    else:
        expect = {"enabled": True, "publicClient": False, "bearerOnly": False,
                  "directAccessGrantsEnabled": True, "clientAuthenticatorType": "client-secret"}
        for key, value in expect.items():
            if client.get(key, value if key in ("enabled", "bearerOnly") else None) != value:
                problem(where, f"client {client['clientId']}: {key} must be {json.dumps(value)}")
        if client.get("secret") != fe.get("LZ_OIDC_CLIENT_SECRET"):
            problem(where, "client secret differs from the frontend's LZ_OIDC_CLIENT_SECRET (compose/.env OIDC_CLIENT_SECRET)")

    cli_id = fe.get("LZ_OIDC_CLI_CLIENT_ID", "lanzadera-cli")
    cli = clients.get(cli_id)
    if not cli:
        problem(where, f"no client {cli_id} (the lanzadera command's, LZ_OIDC_CLI_CLIENT_ID)")
    else:
        if cli.get("enabled") is False or cli.get("publicClient") is not True or cli.get("secret"):
            problem(where, f"client {cli_id}: must be an enabled public client with no secret (a command line cannot keep one)")
        if (cli.get("attributes") or {}).get("oauth2.device.authorization.grant.enabled") != "true":
            problem(where, f"client {cli_id}: the device authorization grant must be on (lanzadera login)")

    users = {u.get("username"): u for u in realm.get("users") or []}
    for name, password in (("alice", "alice-pass"), ("bob", "bob-pass")):
        u = users.get(name)
        if not u:
            problem(where, f"example user {name} is missing (dev/platform.sh and the tests sign in as {name})")
            continue
        try:
            uuid.UUID(u.get("id", ""))
        except ValueError:
            problem(where, f"user {name}: id must be a fixed UUID (it becomes the token's sub)")
        creds = [c for c in u.get("credentials") or [] if c.get("type") == "password"]
        if not creds or creds[0].get("value") != password or creds[0].get("temporary"):
            problem(where, f"user {name}: needs the non-temporary password {password}")
        if u.get("enabled") is False or "user" not in (u.get("realmRoles") or []):
            problem(where, f"user {name}: must be enabled with realm role user")
        if "/example-users" not in (u.get("groups") or []):
            problem(where, f"user {name}: not marked as an example user (group /example-users)")

    kc = services["keycloak"]
    kc_env = kc["environment"]
    issuer = fe.get("LZ_OIDC_ISSUER", "").rstrip("/")
    expected = f"{kc_env.get('KC_HOSTNAME', '').rstrip('/')}/realms/{realm.get('realm')}"
    if issuer != expected:
        problem("compose", f"frontend LZ_OIDC_ISSUER {issuer} is not Keycloak's issuer {expected} (KC_HOSTNAME + realm)")
    if url_host(issuer) not in services:
        problem("compose", f"the issuer host {url_host(issuer)} is not reachable from the frontend (no such service)")
    if "--import-realm" not in (kc.get("command") or []):
        problem("compose keycloak", "is not started with --import-realm")
    mounts = {v.get("target"): v.get("source") for v in kc.get("volumes") or []}
    if Path(mounts.get("/opt/keycloak/data/import", "/nonexistent")).resolve() != (root / "keycloak").resolve():
        problem("compose keycloak", "keycloak/ is not mounted at /opt/keycloak/data/import")
    finish("realm checks")


# ---------------------------------------------------------------- kumori --


def cmd_kumori(root, system_json, security_json):
    root = Path(root)
    code = code_env(root)
    realm = json.loads((root / "keycloak/lanzadera-realm.json").read_text())
    deployments = {}
    for path in (system_json, security_json):
        d = json.loads(Path(path).read_text())["deployment"]
        deployments[d["name"]] = d
    if set(deployments) != {"lanzadera-system", "lanzadera-security"}:
        problem("kumori", f"expected deployments lanzadera-system and lanzadera-security, got {sorted(deployments)}")
        finish("kumori checks")

    containers = {}
    for dname, dep in deployments.items():
        svc = dep["artifact"]["description"]
        roles = svc["role"]
        scale = dep["config"]["scale"]["detail"]
        if set(scale) != set(roles):
            problem(dname, f"instance counts for {sorted(scale)} but the roles are {sorted(roles)}")
        for r, s in scale.items():
            if r in SINGLE_INSTANCE and s["hsize"] != 1:
                problem(dname, f"role {r} must run exactly one instance (single-node configuration)")

        channels = {}
        for rname, role in roles.items():
            art = role["artifact"]
            desc = art["description"]
            srv = desc["srv"]
            channels[rname] = (set(srv.get("server", {})) | set(srv.get("duplex", {})),
                               set(srv.get("client", {})) | set(srv.get("duplex", {})), art)
            if desc.get("builtin"):
                continue
            resources = desc["config"]["resource"]
            for cname, c in desc["code"].items():
                where = f"{dname} role {rname} container {cname}"
                containers[(dname, rname)] = c
                for var, m in c["mapping"].get("env", {}).items():
                    if "secret" in m and "secret" not in resources.get(m["secret"], {}):
                        problem(where, f"{var} maps secret {m['secret']}, which is not a secret resource")
                for fpath, m in c["mapping"].get("filesystem", {}).items():
                    for kind in ("volume", "secret"):
                        if kind in m and kind not in resources.get(m[kind], {}):
                            problem(where, f"{fpath} maps {kind} {m[kind]}, which is not a {kind} resource")
                if rname in SERVICES:
                    check_env_names(where, rname, c["mapping"].get("env", {}), code)

        # Connectors: clients to servers, every client channel wired.
        wired = set()
        for cname, conn in svc["connect"].items():
            where = f"{dname} connector {cname}"
            for end, side in (("from", 1), ("to", 0)):
                for ep in conn[end]:
                    t, ch = ep["target"], ep["channel"]
                    if t not in roles:
                        problem(where, f"{end} unknown role {t}")
                    elif ch not in channels[t][side]:
                        kind = "client" if side else "server"
                        problem(where, f"{end} {t}.{ch} is not a {kind} channel of {t}")
                    if end == "from":
                        wired.add((t, ch))
        for rname, (_, clients, _) in channels.items():
            for ch in clients - {c for r, c in wired if r == rname}:
                problem(dname, f"client channel {rname}.{ch} is connected to nothing")

        # An HTTPS inbound in front of the public server.
        public = "frontend" if dname == "lanzadera-system" else "keycloak"
        inbound_roles = {r for r, (_, _, a) in channels.items() if a["ref"].get("module") == "builtins/inbound"}
        if not any(ep["target"] in inbound_roles for c in svc["connect"].values() for ep in c["from"]
                   if any(t["target"] == public for t in c["to"])):
            problem(dname, f"no inbound role is connected to {public}")

    # Host names the services dial are their client channels.
    for (dname, rname), c in containers.items():
        env = {k: v.get("value") for k, v in c["mapping"].get("env", {}).items()}
        clients = channels_of(deployments[dname], rname)
        for var in ("LZ_KAFKA_BROKERS",):
            for broker in (env.get(var) or "").split(","):
                if broker and broker.split(":")[0] not in clients:
                    problem(f"{dname} role {rname}", f"{var} host {broker} is not one of its client channels")
        if env.get("LZ_S3_ENDPOINT") and url_host(env["LZ_S3_ENDPOINT"]) not in clients:
            problem(f"{dname} role {rname}", "LZ_S3_ENDPOINT host is not one of its client channels")

    system = deployments["lanzadera-system"]
    sroles = system["artifact"]["description"]["role"]
    kafka_env = containers[("lanzadera-system", "kafka")]["mapping"]["env"]
    adv = kafka_env["KAFKA_ADVERTISED_LISTENERS"]["value"]
    for rname in SERVICES:
        brokers = containers[("lanzadera-system", rname)]["mapping"]["env"]["LZ_KAFKA_BROKERS"]["value"]
        if brokers not in adv:
            problem("lanzadera-system", f"{rname} dials {brokers}, kafka advertises {adv}")

    # The observer scales the worker role within its bounds, with the script.
    obs = {k: v.get("value") for k, v in containers[("lanzadera-system", "observer")]["mapping"]["env"].items()}
    workers = system["config"]["scale"]["detail"]["worker"]["hsize"]
    if not int(obs["LZ_MIN_WORKERS"]) <= workers <= int(obs["LZ_MAX_WORKERS"]):
        problem("lanzadera-system", f"worker instances {workers} outside the observer's {obs['LZ_MIN_WORKERS']}..{obs['LZ_MAX_WORKERS']}")
    if obs.get("LZ_ACTUATOR") == "command":
        program = obs["LZ_ACTUATOR_COMMAND"].split()[0]
        prefix = "/opt/lanzadera/kumori/"
        local = root / "kumori" / program[len(prefix):] if program.startswith(prefix) else None
        if not local or not local.is_file() or not os.access(local, os.X_OK):
            problem("lanzadera-system observer", f"LZ_ACTUATOR_COMMAND runs {program}, not an executable of kumori/ (copied to {prefix})")
        if "{replicas}" not in obs["LZ_ACTUATOR_COMMAND"]:
            problem("lanzadera-system observer", "LZ_ACTUATOR_COMMAND does not pass {replicas}")

    # Same secrets where two roles must agree.
    res = system["config"]["resource"]
    minio = containers[("lanzadera-system", "minio")]["mapping"]["env"]
    mres = sroles["minio"]["config"]["resource"]
    for var, key in (("MINIO_ROOT_USER", "s3AccessKey"), ("MINIO_ROOT_PASSWORD", "s3SecretKey")):
        if mres[minio[var]["secret"]] != res[key]:
            problem("lanzadera-system", f"minio {var} is not the services' {key}")

    # The frontend trusts the issuer Keycloak puts in its tokens.
    security = deployments["lanzadera-security"]
    kc = {k: v.get("value") for k, v in containers[("lanzadera-security", "keycloak")]["mapping"]["env"].items()}
    fe = {k: v.get("value") for k, v in containers[("lanzadera-system", "frontend")]["mapping"]["env"].items()}
    expected = f"{kc['KC_HOSTNAME'].rstrip('/')}/realms/{realm['realm']}"
    if fe["LZ_OIDC_ISSUER"].rstrip("/") != expected:
        problem("kumori", f"frontend LZ_OIDC_ISSUER {fe['LZ_OIDC_ISSUER']} is not Keycloak's issuer {expected}")
    if fe.get("LZ_OIDC_CLIENT_ID") not in {c.get("clientId") for c in realm.get("clients", [])}:
        problem("kumori", f"frontend LZ_OIDC_CLIENT_ID {fe.get('LZ_OIDC_CLIENT_ID')} is not a client of the realm")
    pg = containers[("lanzadera-security", "postgres")]["mapping"]["env"]
    kcenv = containers[("lanzadera-security", "keycloak")]["mapping"]["env"]
    secroles = security["artifact"]["description"]["role"]
    if secroles["postgres"]["config"]["resource"][pg["POSTGRES_PASSWORD"]["secret"]] != \
            secroles["keycloak"]["config"]["resource"][kcenv["KC_DB_PASSWORD"]["secret"]]:
        problem("lanzadera-security", "Keycloak's KC_DB_PASSWORD is not PostgreSQL's password secret")
    if pg["POSTGRES_USER"]["value"] != kcenv["KC_DB_USERNAME"]["value"] or \
            not kcenv["KC_DB_URL"]["value"].endswith("/" + pg["POSTGRES_DB"]["value"]):
        problem("lanzadera-security", "Keycloak's database user / name differ from PostgreSQL's")
    finish("kumori checks")


def channels_of(dep, rname):
    srv = dep["artifact"]["description"]["role"][rname]["artifact"]["description"]["srv"]
    return set(srv.get("client", {})) | set(srv.get("duplex", {}))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"compose": cmd_compose, "dockerfile": cmd_dockerfile, "realm": cmd_realm, "kumori": cmd_kumori}[cmd](*args)
