# SPDX-License-Identifier: Apache-2.0
"""DNP3: tshark's dnp3 fields against our `dnp3` transaction events
(plugins/dissectors/dnp3/README.md lists the event fields).

One PDU is one application fragment: tshark shows it on the frame carrying
its final transport segment, with that link frame's addresses. Our events
carry the fragments in `dnp3.request` and `dnp3.response`; an unsolicited
response (status "unsolicited", a one-leg event) has only `dnp3.response`,
and later fragments of a multi-fragment response (`dnp3.continuation`) have
no request: their request leg expands to nothing.
"""

NAME = "dnp3"
PROTOS = ("dnp3",)
# Frames where an application fragment completes (link-only frames and
# non-final transport segments carry no application layer).
#
# Wireshark 4.0 mis-reassembles every fragment whose final transport
# segment has sequence number 0 (after the 63 -> 0 wrap): a multi-segment
# fragment is not reassembled at all and a single-segment one is shown as
# zeros (function 0, sequence 0). Those fragments are left out on both
# sides: here by filter, in expand() by the event's `transport_seq`.
TSHARK_FILTER = "dnp3.al.func && dnp3.tr.seq != 0"
PDU_START = "dnp3"
PDU_START_FIELD = "dnp3.al.func"
MATCH = ("dnp3.src", "dnp3.dst", "dnp3.al.func", "dnp3.al.seq")
FIELDS = (
    "dnp3.src", "dnp3.dst", "dnp3.al.func", "dnp3.al.fir", "dnp3.al.fin", "dnp3.al.con",
    "dnp3.al.uns", "dnp3.al.seq", "dnp3.al.iin", "dnp3.al.obj", "dnp3.al.objq.prefix",
    "dnp3.al.objq.range", "dnp3.al.range.start", "dnp3.al.range.stop",
    "dnp3.al.range.quantity", "dnp3.al.index", "dnp3.al.ctrlstatus",
)

# Our events report at most this many object headers per fragment and
# points per header.
MAX_OBJECTS = 32
MAX_POINTS = 16
TRUNCATED = "ots.objects_truncated"  # pseudo-field: tshark listed more than we keep


def tshark_record(rec):
    """Cuts tshark's lists where ours stop, so both say the same."""
    if len(rec.get("dnp3.al.obj", [])) > MAX_OBJECTS:
        # Which range/index values belong to the first MAX_OBJECTS headers
        # is not recoverable from flat field lists: compare the headers only.
        rec["dnp3.al.obj"] = rec["dnp3.al.obj"][:MAX_OBJECTS]
        for f in ("dnp3.al.objq.prefix", "dnp3.al.objq.range"):
            rec[f] = rec.get(f, [])[:MAX_OBJECTS]
        rec[TRUNCATED] = ["true"]
    return rec


def _put(r, field, values):
    if values:
        r[field] = [str(v) for v in values]


def _fragment(m, src, dst):
    r = {}
    _put(r, "dnp3.src", [src])
    _put(r, "dnp3.dst", [dst])
    _put(r, "dnp3.al.func", [m["function"]])
    for k in ("fir", "fin", "con", "uns"):
        _put(r, "dnp3.al." + k, ["1" if m[k] else "0"])
    _put(r, "dnp3.al.seq", [m["seq"]])
    if "iin" in m:
        _put(r, "dnp3.al.iin", ["0x%04x" % m["iin"]])
    objs = m.get("objects", [])
    _put(r, "dnp3.al.obj", ["0x%02x%02x" % (o["group"], o["variation"]) for o in objs])
    _put(r, "dnp3.al.objq.prefix", [o["prefix_code"] for o in objs])
    _put(r, "dnp3.al.objq.range", [o["range_code"] for o in objs])
    _put(r, "dnp3.al.range.start", [o["start"] for o in objs if "start" in o])
    _put(r, "dnp3.al.range.stop", [o["stop"] for o in objs if "stop" in o])
    _put(r, "dnp3.al.range.quantity", [o["count"] for o in objs if "count" in o])
    indexes, status, cut = [], [], False
    for o in objs:
        pts = o.get("points", [])
        cut = cut or o.get("points_truncated", False)
        if o["prefix_code"] in (1, 2, 3):
            indexes += [p["index"] for p in pts]
        status += [p["status"] for p in pts if "status" in p]
    _put(r, "dnp3.al.index", indexes)
    _put(r, "dnp3.al.ctrlstatus", status)
    if cut:
        r["dnp3.al.index"] = None
        r["dnp3.al.ctrlstatus"] = None
    if m.get("objects_truncated"):
        if m.get("object_count", 0) > MAX_OBJECTS:
            r[TRUNCATED] = ["true"]
        # The walk stopped early (unknown or malformed object): what
        # follows is not in the event.
        for f in FIELDS[9:]:
            r.setdefault(f, None)
            if r[f] is not None and m.get("object_count", 0) <= MAX_OBJECTS:
                r[f] = None
    return r


def expand(event, leg):
    """The PDU records that transaction @event says were on the wire for
    @leg ("request"/"response")."""
    m = event.get("dnp3", {})
    frag = m.get("request") if leg == "request" else m.get("response")
    if leg == "request" and frag is None and event.get("status") == "unsolicited":
        frag = m.get("response")
    if not frag or frag.get("transport_seq") == 0:
        return []
    # Link addresses from the association (each fragment also carries its
    # own src/dst, which the unit tests check against these).
    if frag is m.get("request"):
        return [_fragment(frag, m["master"], m["outstation"])]
    return [_fragment(frag, m["outstation"], m["master"])]
