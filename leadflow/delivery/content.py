"""Marketing's e-mail content: one template per content id, `content/<id>.yaml` beside the
`policies/` folder, with a `subject`, a `text` and an `html` part (Jinja2; the lead's profile is
`lead`, the unsubscribe link `unsubscribe_url`).

Checked like a policy, as `file:line: id: message`: a policy that sends content with no template
is refused, and so is a template that reads a field the lead's profile cannot have (the fields
the policy's `profile:` declares, or without one the fields its rules read) or a variable that
is not there at all. Templates run in Jinja's sandbox: marketing writes them, and a template
must not reach into Python."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from leadflow.delivery import linkify
from leadflow.delivery.watched import Watched, log_notes
from rules.conditions import ConditionError, fields_of, parse_when
from rules.policy import DERIVED_PROFILE, Effects, Policy, Send
from rules.validate import LoadedPolicy, Problem, owner_of
from rules.yaml_lines import YamlError, load_yaml

log = logging.getLogger("leadflow.content")

PARTS = ("subject", "text", "html")
OPTIONAL = ("description", "topic")
TOPIC = re.compile(r"^[a-z][a-z0-9-]{0,39}$")  # what a person keeps or drops on the preference page
VARIABLES = {"lead": "the lead's profile", "unsubscribe_url": "the lead's own unsubscribe link"}
MAX_SUBJECT = 250
# what names a content id, here and in the policy schema (rules/schemas/policy.schema.json,
# $defs.contentId): the id is a file name under content/, so never a path (`send: ../x`)
CONTENT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
CONTENT_ID_RULE = "lower-case letters, digits, '-' and '_', at most 100, starting with a letter or digit"

# every `{{ … }}` bracketed (linkify.mark): only the links the template writes itself are tracked
_TEXT = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True, finalize=linkify.mark)
_HTML = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True, finalize=linkify.mark)


class ContentInvalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class NoTemplate(LookupError):
    pass


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    # where the links the template itself wrote are (start, end): the text part's bare URLs, the
    # HTML part's href values (still HTML-escaped). Only these are tracked; a link that came in
    # through a value (the lead's profile) is left as it is (delivery.linkify)
    text_links: linkify.Spans = ()
    html_links: linkify.Spans = ()


@dataclass
class Template:
    id: str
    file: str
    sha: str
    parts: dict[str, Any]  # part -> compiled jinja2 Template
    lead_fields: dict[str, int] = field(default_factory=dict)  # lead.<field> read -> file line
    source: bytes = field(default=b"", repr=False)  # the file's bytes: what a delivery process compiles
    topic: str | None = None  # the preference it belongs to (guides, events): a person may drop it
    # jinja2's Template.render merges the environment's globals into every call's context (a walk
    # over a ChainMap, half the time of rendering a part); merged once here instead
    _globals: dict[str, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._globals = {part: dict(template.globals) for part, template in self.parts.items()}

    def render(self, lead: dict[str, Any], unsubscribe_url: str) -> Rendered:
        out: dict[str, str] = {}
        for part in PARTS:
            template, env = self.parts[part], self.parts[part].environment
            context = template.new_context({**self._globals[part], "lead": lead,
                                            "unsubscribe_url": unsubscribe_url}, shared=True)
            try:
                out[part] = env.concat(template.root_render_func(context))
            except Exception:
                env.handle_exception()  # raises, with the template's lines in the traceback
        # one line, whatever the profile holds: a line break in a header would start a new one
        subject = " ".join(linkify.strip(out["subject"]).split())[:MAX_SUBJECT]
        text, text_links = linkify.split(out["text"], linkify.URL)
        html, html_links = linkify.split(out["html"], linkify.HREF)
        return Rendered(subject=subject, text=text, html=html, text_links=text_links, html_links=html_links)

    def problems_for(self, fields: set[str] | None) -> list[Problem]:
        """What this template reads that a lead with these profile fields cannot have."""
        if fields is None:
            return []
        known = ", ".join(sorted(fields))
        return [Problem(self.file, line, self.id, f"lead.{name}: the lead profile has no such field "
                                                  f"(it may hold: {known})")
                for name, line in sorted(self.lead_fields.items(), key=lambda kv: kv[1])
                if name not in fields]


def bad_content_id(content_id: str) -> str | None:
    """Why this is not a content id, or None when it is one."""
    if CONTENT_ID.fullmatch(content_id):
        return None
    return f"{content_id!r} is not a content id ({CONTENT_ID_RULE})"


def template_path(content_dir: Path, content_id: str) -> Path:
    """Where the template of a content id is; load_template refuses an id that is not one."""
    return content_dir / f"{content_id}.yaml"


def load_template(path: Path, content_id: str | None = None) -> Template:
    content_id = content_id or path.stem
    file = str(path)
    if why := bad_content_id(content_id):
        raise ContentInvalid([Problem(file, 1, content_id, why)])
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ContentInvalid([Problem(file, 1, content_id, err.strerror or str(err))]) from None
    return parse_template(raw, file, content_id)


def parse_template(raw: bytes, file: str, content_id: str) -> Template:
    """A template from its file's bytes (load_template's work once the file is read)."""
    try:
        doc = load_yaml(raw)
    except YamlError as err:
        raise ContentInvalid([Problem(file, err.line, content_id, err.message)]) from None
    if not isinstance(doc.data, dict):
        raise ContentInvalid([Problem(file, 1, content_id, "a template file is a YAML mapping with "
                                                           "subject, text and html")])
    problems: list[Problem] = []
    for key in doc.data:
        if key not in PARTS and key not in OPTIONAL:
            problems.append(Problem(file, doc.line_of((key,)), content_id,
                                    f"unknown key {key!r} (a template has {', '.join(PARTS)})"))
    parts: dict[str, Any] = {}
    lead_fields: dict[str, int] = {}
    for part in PARTS:
        source = doc.data.get(part)
        if not isinstance(source, str) or not source.strip():
            problems.append(Problem(file, doc.line_of((part,)), content_id,
                                    f"{part}: missing or empty (a template needs {', '.join(PARTS)})"))
            continue
        first = doc.text_lines.get((part,), doc.line_of((part,)))
        env = _HTML if part == "html" else _TEXT
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as err:
            problems.append(Problem(file, first + (err.lineno or 1) - 1, content_id,
                                    f"{part}: template syntax: {err.message}"))
            continue
        for name, line in _unknown_names(tree):
            problems.append(Problem(file, first + line - 1, content_id,
                                    f"{part}: unknown variable {name!r} (templates see "
                                    f"{', '.join(VARIABLES)})"))
        for name, line in _lead_fields(tree):
            lead_fields.setdefault(name, first + line - 1)
        if part == "subject" and "\n" in source.strip():
            problems.append(Problem(file, first, content_id, "subject: one line only"))
        parts[part] = env.from_string(source)
    topic = doc.data.get("topic")
    if topic is not None and not (isinstance(topic, str) and TOPIC.match(topic)):
        problems.append(Problem(file, doc.line_of(("topic",)), content_id,
                                f"topic: {topic!r} is not a topic's name (a-z, 0-9 and -, e.g. guides)"))
    if problems:
        raise ContentInvalid(sorted(problems, key=lambda p: p.line))
    return Template(content_id, file, hashlib.sha256(raw).hexdigest(), parts, lead_fields, raw,
                    topic if isinstance(topic, str) else None)


def _unknown_names(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    # names the template assigns itself ({% set %}, loops, macros) are not free variables
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for n in tree.find_all(nodes.Name):
        if n.ctx == "load" and n.name not in VARIABLES and n.name not in bound:
            yield n.name, n.lineno


def _lead_fields(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    """`lead.x`, `lead['x']` and `lead.get('x')`."""
    for n in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Call)):
        if isinstance(n, nodes.Getattr) and _is_lead(n.node) and n.attr != "get":
            yield n.attr, n.lineno
        elif isinstance(n, nodes.Getitem) and _is_lead(n.node) and isinstance(n.arg, nodes.Const) \
                and isinstance(n.arg.value, str):
            yield n.arg.value, n.lineno
        elif isinstance(n, nodes.Call) and isinstance(n.node, nodes.Getattr) and n.node.attr == "get" \
                and _is_lead(n.node.node) and n.args and isinstance(n.args[0], nodes.Const):
            yield str(n.args[0].value), n.lineno


def _is_lead(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "lead"


# -- a policy and its content ---------------------------------------------------------------

def profile_fields(policy: Policy) -> set[str]:
    """The fields a lead of this policy may have: the declared profile, or without one the
    fields its rules read; with the derived ones either way."""
    if policy.profile is not None:
        return set(policy.profile) | DERIVED_PROFILE
    read: set[str] = set(DERIVED_PROFILE)
    whens = [r.when for r in policy.scoring.fit] + [r.when for r in policy.scoring.engagement] \
        + [r.when for r in policy.rules]
    for when in whens:
        try:
            cond = parse_when(when, policy.lists, ())
        except ConditionError:  # validation reported it
            continue
        read |= {t.field.split(".")[1] for t in fields_of(cond) if t.field.startswith("lead.")}
    return read


def sent_content(policy: Policy) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every content id the policy may send, with where it says so: each variant of an A/B
    test at its own place, so its template is checked like any other."""
    for name, track in policy.nurture.tracks.items():
        for j, step in enumerate(track.steps):
            yield from _ids(step.send, ("nurture", "tracks", name, "steps", j, "send"))
        if track.on_exhausted:
            yield from _effects_send(track.on_exhausted, ("nurture", "tracks", name, "on_exhausted"))
    for i, rule in enumerate(policy.rules):
        yield from _effects_send(rule.then, ("rules", i, "then"))
    if policy.handoff:
        for key in ("on_accept", "on_reject"):
            if (effects := getattr(policy.handoff, key)) is not None:
                yield from _effects_send(effects, ("handoff", key))


def _effects_send(effects: Effects, path: tuple[Any, ...]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    if effects.send:
        yield from _ids(effects.send, (*path, "send"))


def _ids(send: Send, path: tuple[Any, ...]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    if isinstance(send, str):
        yield send, path
    else:
        yield from ((variant, (*path, "variants", i)) for i, variant in enumerate(send.variants))


def check_policy_content(loaded: LoadedPolicy, content_dir: Path) -> list[Problem]:
    """A template for everything the policy sends, each reading only what its leads can have."""
    problems: list[Problem] = []
    fields = profile_fields(loaded.policy)
    checked: set[str] = set()
    for content_id, path in sent_content(loaded.policy):
        if why := bad_content_id(content_id):  # the schema says so too; never a path to look at
            problems.append(Problem(loaded.file, loaded.doc.line_of(path), owner_of(loaded.doc.data, path),
                                    why))
            continue
        file = template_path(content_dir, content_id)
        if not file.is_file():
            problems.append(Problem(loaded.file, loaded.doc.line_of(path), owner_of(loaded.doc.data, path),
                                    f"content {content_id!r} has no template: {file} does not exist"))
            continue
        if content_id in checked:
            continue
        checked.add(content_id)
        try:
            template = load_template(file, content_id)
        except ContentInvalid as err:
            problems.extend(err.problems)
            continue
        problems.extend(template.problems_for(fields))
        problems.extend(_topic_problems(loaded, template))
    return sorted(set(problems), key=lambda p: (p.file, p.line))


def _topic_problems(loaded: LoadedPolicy, template: Template) -> list[Problem]:
    """With topics listed, a template the policy sends names one of them (its transactional
    content aside: a person's own requests are no topic to drop)."""
    topics = loaded.policy.topics
    transactional = loaded.policy.delivery.transactional if loaded.policy.delivery else []
    if not topics or template.id in transactional:
        return []
    if template.topic is None:
        return [Problem(template.file, 1, template.id, f"no topic: policy {loaded.policy.policy} lists the "
                                                       f"topics {', '.join(topics)}; name one with topic:")]
    if template.topic not in topics:
        return [Problem(template.file, 1, template.id, f"topic {template.topic!r} is not one of the "
                                                       f"topics of policy {loaded.policy.policy} "
                                                       f"({', '.join(topics)})")]
    return []


def content_dir_for(policy_file: Path) -> Path:
    """`content/` beside the folder the policy file is in."""
    return policy_file.resolve().parent.parent / "content"


# -- the worker's copy ----------------------------------------------------------------------

class ContentStore:
    """The templates a worker renders from. An edited template that fails its checks is
    refused and logged; the last good one stays in use."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._templates: dict[str, Template] = {}
        self._watched = Watched()
        self._lock = threading.Lock()

    def reload(self, fields: set[str] | None = None) -> list[str]:
        notes: list[str] = []
        # checked again when the fields a lead may have change, not only the file
        salt = repr(sorted(fields or ()))
        for path in sorted(self.directory.glob("*.yaml")):
            if not self._watched.changed(path, salt, notes, "kept the last good template"):
                continue
            try:
                template = load_template(path)
                if problems := template.problems_for(fields):
                    raise ContentInvalid(problems)
            except ContentInvalid as err:
                notes.append(f"{path}: refused, the last good template stays:\n  "
                             + "\n  ".join(str(p) for p in err.problems))
                continue
            with self._lock:
                self._templates[template.id] = template
            notes.append(f"{path}: loaded")
        log_notes(log, notes)
        return notes

    def get(self, content_id: str) -> Template:
        if bad_content_id(content_id):  # no file of such a name was ever loaded
            raise NoTemplate(f"no template for content {content_id!r}: not a content id ({CONTENT_ID_RULE})")
        with self._lock:
            template = self._templates.get(content_id)
        if template is None:
            raise NoTemplate(f"no template for content {content_id!r} in {self.directory}")
        return template

    def topics(self) -> list[str]:
        """The topics the loaded templates belong to."""
        with self._lock:
            return sorted({t.topic for t in self._templates.values() if t.topic})

    def digest(self) -> str:
        """Changes when any template file does (for the policy store's re-check)."""
        h = hashlib.sha256()
        for path in sorted(self.directory.glob("*.yaml")):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path.name}:{st.st_mtime_ns}:{st.st_size}\n".encode())
        return h.hexdigest()

