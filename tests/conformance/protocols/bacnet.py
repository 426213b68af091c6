# SPDX-License-Identifier: Apache-2.0
"""BACnet/IP: tshark's bvlc and bacapp fields against our `bacnet`
transaction events (plugins/dissectors/bacnet/README.md lists the fields).

Each leg is the `bacnet.request` or `bacnet.response` object of the event.
Object and property identifiers are compared only where our event lists all
of the PDU's identifiers (tshark lists every one, values included).

A segmented message is one leg whose `segments` list gives every segment
PDU (time as `offset_us` from the event's ts, sequence number, window size,
more-follows), and `segment_acks` the segment ACKs answering them (sent the
other way). Each becomes one record placed at its own time and direction
(see Placed: compare must honour a record's `time_us` and `reverse`; a
compare that ignores them puts these records at their leg's time and
direction, where all but one of them fail). Wireshark decodes the service data of a reassembled message on
the segment that completes it: earlier segments carry no identifiers. A
segment ACK that belongs to no pending segmented message is an event of its
own (function_name "segment_ack", status "no_response", request leg).
"""

import datetime

NAME = "bacnet"
PROTOS = ("bacnet",)
TSHARK_FILTER = "bvlc"
PDU_START = "bvlc"
PDU_START_FIELD = "bvlc.function"
MATCH = ("bvlc.function", "bacapp.type", "bacapp.invoke_id")
FIELDS = (
    "bvlc.function", "bacapp.type", "bacapp.confirmed_service", "bacapp.unconfirmed_service",
    "bacapp.invoke_id", "bacapp.objectType", "bacapp.instance_number",
    "bacapp.property_identifier", "bacapp.segmented_request", "bacapp.more_segments",
    "bacapp.SA", "bacapp.sequence_number", "bacapp.window_size", "bacapp.NAK", "bacapp.SRV",
)
ID_FIELDS = ("bacapp.objectType", "bacapp.instance_number", "bacapp.property_identifier")

# Services whose events carry every object and property identifier of the PDU.
CONFIRMED_IDS = {12, 14, 15, 16}
UNCONFIRMED_IDS = {0}

APDU_CONFIRMED, APDU_UNCONFIRMED, APDU_SEGMENT_ACK, APDU_ABORT = 0, 1, 4, 7
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class Placed(dict):
    """A record that says where it was on the wire: at `time_us` (µs since
    the epoch), and sent the other way than its leg when `reverse`. compare
    puts any other record at its leg's time and direction."""

    def __init__(self, fields, time_us, reverse=False):
        super().__init__(fields)
        self.time_us = time_us
        self.reverse = reverse


def _event_us(event):
    dt = datetime.datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
    return (dt - EPOCH) // datetime.timedelta(microseconds=1)


def _put(r, field, value):
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        r[field] = [str(v) for v in value]
    else:
        r[field] = [str(value)]


def _flag(value):
    return "1" if value else "0"


def _ids(m, r):
    """Object types, instances and property ids in PDU order, or None."""
    types, insts, props = [], [], []
    complete = True

    def value(o):
        nonlocal complete
        if o.get("value_type") == "object_identifier" or o.get("value_count", 1) != 1:
            complete = False

    def obj(o):
        if "object_type" in o:
            types.append(o["object_type"])
            insts.append(o["object_instance"])
        if "property_id" in o:
            props.append(o["property_id"])
        value(o)
        for p in o.get("properties", []):
            props.append(p["property_id"])
            value(p)

    obj(m)
    for o in m.get("objects", []):
        obj(o)
    if "objects_total" in m or "items_total" in m:
        complete = False
    for f, v in zip(ID_FIELDS, (types, insts, props)):
        r[f] = [str(x) for x in v] if complete else None


def _service_ids(m, r):
    """The identifiers of the whole (reassembled) message @m into @r."""
    t, svc = m.get("apdu_type"), m.get("service")
    if m.get("incomplete"):
        ids = False
    elif t in (0, 3):
        ids = svc in CONFIRMED_IDS
    elif t == 1:
        ids = svc in UNCONFIRMED_IDS
    else:
        ids = t in (2, 4, 6, 7)  # no identifiers at all
    if ids:
        _ids(m, r)
    else:
        for f in ID_FIELDS:
            r[f] = None


def _header(m):
    """The fields every PDU of message @m shows (each segment repeats them)."""
    r = {}
    _put(r, "bvlc.function", "0x%02x" % m["bvlc_function"])
    t = m.get("apdu_type")
    if t is None:
        # BVLC-only and network-layer PDUs carry no APDU.
        for f in FIELDS[1:]:
            r.setdefault(f, None)
        return r
    _put(r, "bacapp.type", t)
    if t == APDU_UNCONFIRMED:
        _put(r, "bacapp.unconfirmed_service", m.get("service"))
    elif t in (0, 2, 3, 5):
        _put(r, "bacapp.confirmed_service", m.get("service"))
    if t != APDU_UNCONFIRMED:
        _put(r, "bacapp.invoke_id", m.get("invoke_id"))
    if t in (0, 3):
        _put(r, "bacapp.segmented_request", _flag("segments" in m))
        _put(r, "bacapp.more_segments", "0")
    if t == APDU_CONFIRMED:
        _put(r, "bacapp.SA", _flag(m.get("segmented_response_accepted")))
    if t == APDU_SEGMENT_ACK:  # a segment ACK of no pending message
        _put(r, "bacapp.sequence_number", m["sequence_number"])
        _put(r, "bacapp.window_size", m["window_size"])
        _put(r, "bacapp.NAK", _flag(m["negative_ack"]))
        _put(r, "bacapp.SRV", _flag(m["sent_by_server"]))
    if t == APDU_ABORT:
        _put(r, "bacapp.SRV", _flag(m["sent_by_server"]))
    return r


def _segments(event, leg, m, head):
    """One record per segment of @m and per segment ACK answering them."""
    base = _event_us(event)
    segs = m["segments"]
    # Wireshark shows the reassembled message on the segment completing it.
    last = next((k for k, g in enumerate(segs) if not g["more_follows"]), None)
    complete = last is not None and not m.get("segments_truncated")
    out = []
    for k, g in enumerate(segs):
        r = dict(head)
        _put(r, "bacapp.segmented_request", "1")
        _put(r, "bacapp.more_segments", _flag(g["more_follows"]))
        _put(r, "bacapp.sequence_number", g["sequence_number"])
        _put(r, "bacapp.window_size", g["window_size"])
        if g["more_follows"]:
            for f in ID_FIELDS:
                r.pop(f, None)  # a segment on its own: nothing decoded
        elif k == last and complete:
            _service_ids(m, r)
        else:
            for f in ID_FIELDS:
                r[f] = None  # a repeated last segment
        out.append(Placed(r, base + g["offset_us"]))
    for a in m.get("segment_acks", []):
        r = {}
        _put(r, "bvlc.function", "0x%02x" % a["bvlc_function"])
        _put(r, "bacapp.type", APDU_SEGMENT_ACK)
        _put(r, "bacapp.invoke_id", m["invoke_id"])
        _put(r, "bacapp.sequence_number", a["sequence_number"])
        _put(r, "bacapp.window_size", a["window_size"])
        _put(r, "bacapp.NAK", _flag(a["negative_ack"]))
        _put(r, "bacapp.SRV", _flag(a["sent_by_server"]))
        # A server's ACK answers the request (sent by src), a client's the
        # response (sent by dst): against its leg either way.
        reverse = a["sent_by_server"] if leg == "request" else not a["sent_by_server"]
        out.append(Placed(r, base + a["offset_us"], reverse))
    return out


# What an answer leaves out when its request is in the event: the invoke id
# and service always the same, a ReadProperty ACK's identifiers when they
# name what the request named (the PDU carries them all the same).
ECHOED = ("invoke_id", "service")
ECHOED_IDS = ("object_type", "object_instance", "property_id", "array_index")


def _with_echo(m, req):
    m = dict(m)
    for k in ECHOED:
        if k not in m and k in req:
            m[k] = req[k]
    if (m.get("apdu_type") == 3 and m.get("service") == 12 and not m.get("incomplete")
            and "object_type" not in m):
        for k in ECHOED_IDS:
            if k in req:
                m[k] = req[k]
    return m


def expand(event, leg):
    m = event.get("bacnet", {}).get(leg)
    if m is None:
        return []
    req = event["bacnet"].get("request")
    if req is not None and req.get("apdu_type") in (APDU_CONFIRMED, APDU_UNCONFIRMED):
        # A request's service is the event's function.
        req = dict(req, service=event["function"])
    if leg == "request":
        m = req
    elif req is not None:
        m = _with_echo(m, req)
    r = _header(m)
    if m.get("apdu_type") is None:
        return [r]
    if "segments" in m:
        return _segments(event, leg, m, r)
    _service_ids(m, r)
    return [r]
