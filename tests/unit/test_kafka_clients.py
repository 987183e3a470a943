"""Every Kafka client Slipstream constructs gets its config from ``schemas.transport.connection`` (security included).

A source scan (AST): a confluent-kafka ``Producer(``/``Consumer(``/``AdminClient(`` must be built from
``kafka_config(...)`` (directly, or from a dict holding ``**kafka_config(...)``, or a name assigned one in the same
function); a Faust app's ``broker=`` only from ``KafkaConnection.faust_options()``; no ``"bootstrap.servers"`` key
anywhere else. A new client that bypasses the connection would connect without SASL/TLS: this test names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("slipstream", "features", "infra", "models", "monitoring", "schemas", "serving", "streams")
CLIENTS = {"Producer", "Consumer", "AdminClient", "SerializingProducer", "DeserializingConsumer"}
AIOKAFKA = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
# The one place a librdkafka config is assembled, and the platform's readiness probes: ``infra`` knows nothing of
# the other parts and only probes the brokers it runs, with their security (``kafka_sasl.client_security``).
ALLOWED = {"schemas/transport/connection.py", "infra/probes.py"}


def _sources() -> list[Path]:
    files: list[Path] = []
    for part in PARTS:
        base = ROOT / part
        if base.is_symlink():
            continue  # slipstream/<part> -> ../<part>: scanned once, under its real path
        files += [p for p in base.rglob("*.py") if not any(q.is_symlink() for q in p.relative_to(ROOT).parents[:-1])]
    return sorted(set(files))


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_config(node: ast.expr) -> bool:
    """``kafka_config(...)``, ``<connection>.config(...)``, or a dict literal holding ``**kafka_config(...)``."""
    if isinstance(node, ast.Call):
        return _name(node.func) in {"kafka_config", "config"}
    if isinstance(node, ast.Dict):
        return any(key is None and _is_config(value) for key, value in zip(node.keys, node.values, strict=True))
    return False


def _assigned_config(scope: ast.AST, name: str) -> bool:
    for node in ast.walk(scope):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        if value is not None and any(_name(t) == name for t in targets) and _is_config(value):
            return True
    return False


def _violations(rel: str, text: str) -> list[str]:
    if rel in ALLOWED:
        return []
    tree = ast.parse(text, filename=rel)
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == "bootstrap.servers":
            found.append(f'{rel}:{node.lineno}: a "bootstrap.servers" key (use kafka_config)')
        if not isinstance(node, ast.Call):
            continue
        called = _name(node.func)
        for keyword in node.keywords:
            if keyword.arg == "broker":
                found.append(f"{rel}:{node.lineno}: broker= (use **KafkaConnection.faust_options())")
        if called in AIOKAFKA and "_settings_auth" not in text:
            found.append(f"{rel}:{node.lineno}: {called}( without the Faust app's credentials (_settings_auth)")
        if called not in CLIENTS or not node.args and not node.keywords:
            continue
        arg = node.args[0] if node.args else node.keywords[0].value
        if _is_config(arg):
            continue
        if isinstance(arg, ast.Name):
            scope: ast.AST = node
            while scope in parents and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                scope = parents[scope]
            if _assigned_config(scope, arg.id):
                continue
        found.append(f"{rel}:{node.lineno}: {called}( not built from kafka_config(...)")
    return found


def test_every_kafka_client_takes_the_connection() -> None:
    sources = _sources()
    assert len(sources) > 100  # the scan really walked the tree
    problems = [
        problem
        for path in sources
        for problem in _violations(path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
    ]
    assert problems == []


def test_the_scan_catches_a_bypass() -> None:
    text = (
        "from confluent_kafka import Consumer, Producer\n"
        "def a(b):\n    return Consumer({'group.id': 'g'})\n"
        "def c(b):\n    conf = {'linger.ms': 1}\n    return Producer(conf)\n"
        "def d(b):\n    return Producer({'bootstrap.servers': b})\n"
        "def e(b):\n    conf = {**kafka_config(b), 'linger.ms': 1}\n"
        "    return Producer(conf), Consumer(kafka_config(b))\n"
        "app = App('x', broker='kafka://b')\n"
    )
    problems = _violations("schemas/probe.py", text)
    assert sorted(p.split(": ", 1)[1] for p in problems) == sorted(
        [
            "Consumer( not built from kafka_config(...)",
            "Producer( not built from kafka_config(...)",
            'a "bootstrap.servers" key (use kafka_config)',
            "Producer( not built from kafka_config(...)",
            "broker= (use **KafkaConnection.faust_options())",
        ]
    )
