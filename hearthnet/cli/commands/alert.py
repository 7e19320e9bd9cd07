"""`hearthnet alert send|ls|ack|show`: signed emergency alerts (CAP 1.2 fields), their
acknowledgements and the roll-up with the members not yet heard from, through the running
node's alerts worker (alert.send, alert.list, alert.ack; see hearthnet/services/alerts/
and README "Emergency alerts").

ID is an alert's event id or a unique prefix of 6+ characters. Exercise and Test alerts
are marked as such in every output. Only trusted or anchor members may send: anyone else
gets exit 4 with the ledger's reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from hearthnet.cli import boundary
from hearthnet.cli.durations import parse_ttl
from hearthnet.cli.render import Notice, Output

if TYPE_CHECKING:
    from hearthnet.cli.state import CliState

SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")  # = hearthnet.ledger.events.ALERT_ENUMS
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
ACK_STATUSES = ("ok", "need_help", "other")
_COLUMNS = ["id", "kind", "severity", "headline", "sender", "sent", "state", "ok", "help", "not heard", "mine"]


def _who(entry: dict[str, Any]) -> str:
    from hearthnet.cli.render import short_node_id

    name = entry.get("name")
    short = short_node_id(entry.get("node_id"))
    return f"{name} ({short})" if name else short


def _kind(a: dict[str, Any]) -> str:
    """EXERCISE / TEST in capitals wherever an alert is shown: nobody may mistake one for real."""
    mark = "" if a.get("status") == "Actual" else f"{str(a.get('status')).upper()} "
    return f"{mark}{a.get('msg_type')}"


def _state(a: dict[str, Any]) -> str:
    if a.get("cancelled"):
        return "cancelled"
    if a.get("superseded_by"):
        return "superseded"
    return "active" if a.get("active") else ("expired" if a.get("msg_type") != "Cancel" else "-")


# --------------------------------------------------------------------------- ls / show


@dataclass
class AlertList:
    alerts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "count": len(self.alerts)}

    def human(self, out: Output) -> None:
        if not self.alerts:
            out.echo("No alerts.")
            return
        rows = []
        for a in self.alerts:
            r = a.get("rollup") or {}
            kind = out.text(_kind(a), "bold yellow" if a.get("exercise") else "bold red")
            rows.append([a.get("event_id"), kind, a.get("severity"), a.get("headline"),
                         a.get("sender_name") or _who({"node_id": a.get("sender")}),
                         str(a.get("sent", ""))[:16].replace("T", " "), _state(a),
                         len(r.get("ok") or []), len(r.get("need_help") or []), len(r.get("not_heard") or []),
                         (a.get("my_ack") or {}).get("status", "-")])
        out.table(_COLUMNS, rows)
        if any(a.get("exercise") for a in self.alerts):
            out.echo("EXERCISE/TEST alerts are drills: no real emergency.")


@dataclass
class AlertShown:
    alert: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"alert": self.alert}

    def human(self, out: Output) -> None:
        a = self.alert
        if a.get("exercise"):
            out.echo(out.style(f"*** {str(a.get('status')).upper()}: NOT A REAL EMERGENCY ***", fg="yellow", bold=True))
        out.echo(out.style(f"{_kind(a)} [{a.get('severity')}/{a.get('urgency')}/{a.get('certainty')}] "
                           f"{a.get('headline')}", bold=True))
        for label, key in (("id", "event_id"), ("identifier", "identifier"), ("sent", "sent"),
                           ("expires", "expires"), ("area", "area"), ("description", "description"),
                           ("instruction", "instruction")):
            if a.get(key):
                out.echo(f"{label:>12}: {a[key]}")
        out.echo(f"{'sender':>12}: {_who({'node_id': a.get('sender'), 'name': a.get('sender_name')})}")
        out.echo(f"{'state':>12}: {_state(a)}" + (f" (by {a['superseded_by']})" if a.get("superseded_by") else ""))
        if a.get("references"):
            out.echo(f"{'replaces':>12}: {', '.join(a['references'])}")
        mine = a.get("my_ack")
        out.echo(f"{'you':>12}: " + (f"{mine['status']} {mine.get('note') or ''}".rstrip() if mine else
                                     "not acknowledged (hearthnet alert ack ID --status ok|need_help|other)"))
        r = a.get("rollup") or {}
        for label, key in (("ok", "ok"), ("need help", "need_help"), ("other", "other")):
            entries = r.get(key) or []
            out.echo(f"{label:>12}: " + ("; ".join(_who(e) + (f" – {e['note']}" if e.get("note") else "")
                                                  for e in entries) or "-"))
        heard = r.get("not_heard") or []
        out.echo(out.style(f"{'not heard':>12}: " + (", ".join(_who(e) for e in heard) or "- (everyone answered)"),
                           fg="red" if heard else None))


def list_alerts(state: "CliState", active: bool) -> AlertList:
    out = state.call("alert.list", {"active_only": active}).get("output") or {}
    return AlertList(list(out.get("alerts") or []))


def show(state: "CliState", alert_id: str) -> AlertShown:
    from hearthnet.errors import HearthNetError

    found = (state.call("alert.list", {"event_id": alert_id}).get("output") or {}).get("alerts") or []
    if not found:
        raise HearthNetError("not_found", f"no alert {alert_id!r} on this node")
    return AlertShown(found[0])


# --------------------------------------------------------------------------- send / ack


def send_input(*, headline: str | None, status: str, update: str | None, cancel: str | None,
               expires: str | None, **texts: Any) -> dict[str, Any]:
    """The alert.send input; HearthNetError before anything is sent for bad input."""
    from hearthnet.errors import HearthNetError

    if headline is None or not headline.strip():
        raise HearthNetError("bad_request", "--headline is required: one line saying what is happening")
    if update and cancel:
        raise HearthNetError("usage", "give --update ID or --cancel ID, not both")
    inp: dict[str, Any] = {"headline": headline, "status": status,
                           **{k: v for k, v in texts.items() if v is not None}}
    if update or cancel:
        inp["msg_type"], inp["references"] = ("Update", [update]) if update else ("Cancel", [cancel])
    seconds = parse_ttl(expires.strip() if expires else None) if expires else None
    if seconds is not None:
        inp["expires_in_seconds"] = seconds
    return inp


def send(state: "CliState", inp: dict[str, Any]) -> Notice:
    out = state.call("alert.send", inp).get("output") or {}
    doc = {k: out.get(k) for k in ("event_id", "lamport", "identifier", "pushed")}
    drill = "" if inp.get("status", "Actual") == "Actual" else f"{inp['status'].upper()} "
    return Notice(doc, f"Sent {drill}alert {doc['event_id']}; {len(doc['pushed'] or [])} online neighbour(s) "
                        "have it now, the rest get it by sync.")


def ack(state: "CliState", alert_id: str, status: str, note: str | None) -> Notice:
    inp: dict[str, Any] = {"event_id": alert_id, "status": status}
    if note is not None:
        inp["note"] = note
    out = state.call("alert.ack", inp).get("output") or {}
    doc = {k: out.get(k) for k in ("event_id", "lamport", "pushed")}
    return Notice(doc, f"Acknowledged {alert_id} as {status} ({doc['event_id']}).")


# --------------------------------------------------------------------------- commands


@click.group("alert")
def cli() -> None:
    """Signed emergency alerts: send (trusted/anchor members), list, acknowledge, roll-up."""


@cli.command("send")
@click.option("--headline", help="One line, at most 160 characters (required).")
@click.option("--description", help="What is happening (at most 4096 characters).")
@click.option("--instruction", help="What people should do (at most 4096 characters).")
@click.option("--area", help="Where (free text, at most 512 characters).")
@click.option("--severity", type=click.Choice(SEVERITIES), help="Default Severe.")
@click.option("--urgency", type=click.Choice(URGENCIES), help="Default Immediate.")
@click.option("--certainty", type=click.Choice(CERTAINTIES), help="Default Likely.")
@click.option("--exercise", "status", flag_value="Exercise", help="A drill: marked EXERCISE everywhere.")
@click.option("--test", "status", flag_value="Test", help="A technical test: marked TEST everywhere.")
@click.option("--update", metavar="ID", help="Replace alert ID with this one (msgType Update).")
@click.option("--cancel", metavar="ID", help="Cancel alert ID (msgType Cancel).")
@click.option("--expires", help="How long it holds: seconds, or e.g. 30m, 6h, 2d (default 6h, at most 7d).")
@click.option("--json", "as_json", is_flag=True, help="Print {event_id, lamport, identifier, pushed}.")
@click.pass_obj
def send_cmd(state: "CliState", headline: str | None, description: str | None, instruction: str | None,
             area: str | None, severity: str | None, urgency: str | None, certainty: str | None,
             status: str | None, update: str | None, cancel: str | None, expires: str | None,
             as_json: bool) -> None:
    """Send an alert signed by this node to every member (pushed at once to online peers).

    Exit 2 for bad input (nothing is sent), 4 when this node may not issue alerts."""
    boundary.run(lambda: send(state, send_input(
        headline=headline, status=status or "Actual", update=update, cancel=cancel, expires=expires,
        description=description, instruction=instruction, area=area, severity=severity, urgency=urgency,
        certainty=certainty)), as_json=as_json, state=state)


@cli.command("ls")
@click.option("--active", is_flag=True, help="Only alerts in force (not expired, cancelled or replaced).")
@click.option("--json", "as_json", is_flag=True, help="Print {alerts: [...], count} (alert.list's fields).")
@click.pass_obj
def ls_cmd(state: "CliState", active: bool, as_json: bool) -> None:
    """Alerts on this node, newest first, with their acknowledgement counts."""
    boundary.run(lambda: list_alerts(state, active), as_json=as_json, state=state)


@cli.command("show")
@click.argument("alert_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print {alert: {...}} (alert.list's fields).")
@click.pass_obj
def show_cmd(state: "CliState", alert_id: str, as_json: bool) -> None:
    """One alert in full, with the roll-up: ok, need help, and the members not heard from."""
    boundary.run(lambda: show(state, alert_id), as_json=as_json, state=state)


@cli.command("ack")
@click.argument("alert_id", metavar="ID")
@click.option("--status", type=click.Choice(ACK_STATUSES), required=True)
@click.option("--note", help="Free text, at most 1024 characters.")
@click.option("--json", "as_json", is_flag=True, help="Print {event_id, lamport, pushed}.")
@click.pass_obj
def ack_cmd(state: "CliState", alert_id: str, status: str, note: str | None, as_json: bool) -> None:
    """Acknowledge alert ID: ok, need_help or other (your latest answer counts)."""
    boundary.run(lambda: ack(state, alert_id, status, note), as_json=as_json, state=state)
