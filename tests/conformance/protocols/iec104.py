# SPDX-License-Identifier: Apache-2.0
"""IEC 60870-5-104: tshark's iec60870_104 (APCI) and iec60870_asdu fields
against our `iec104` transaction events (plugins/dissectors/iec104/README.md
lists the event fields).

Every APDU is one leg of one event: the request (or the one-way APDU:
process data, S frames, terminations) at the top of the `iec104` object, its
confirmation in `iec104.response`; a confirmation without its activation has
only `iec104.response`.
"""

NAME = "iec104"
PROTOS = ("iec104",)
TSHARK_FILTER = "iec60870_104"
PDU_START = "iec60870_104"
# Every APDU has exactly one APCI type.
PDU_START_FIELD = "iec60870_104.type"
MATCH = ("iec60870_104.type", "iec60870_104.utype", "iec60870_104.tx", "iec60870_104.rx")
FIELDS = (
    "iec60870_104.type", "iec60870_104.utype", "iec60870_104.tx", "iec60870_104.rx",
    "iec60870_asdu.typeid", "iec60870_asdu.sq", "iec60870_asdu.numix",
    "iec60870_asdu.causetx", "iec60870_asdu.nega", "iec60870_asdu.test",
    "iec60870_asdu.oa", "iec60870_asdu.addr", "iec60870_asdu.ioa",
)

APCI_TYPES = {"i": 0, "s": 1, "u": 3}
# tshark's utype is the U control octet shifted right by two.
U_TYPES = {
    "startdt_act": 0x01, "startdt_con": 0x02,
    "stopdt_act": 0x04, "stopdt_con": 0x08,
    "testfr_act": 0x10, "testfr_con": 0x20,
}


def _put(r, field, value):
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        r[field] = [str(v) for v in value]
    else:
        r[field] = [str(value)]


def _bool(v):
    return None if v is None else ("1" if v else "0")


def expand(event, leg):
    """The PDU record (dict field -> list of str; None: do not compare) that
    transaction @event says was on the wire for @leg ("request"/"response")."""
    m = event.get("iec104", {})
    if leg == "response":
        m = m.get("response")
        if m is None:
            return []
    r = {}
    apci = m.get("apci_type")
    if apci in APCI_TYPES:
        _put(r, "iec60870_104.type", "0x%08x" % APCI_TYPES[apci])
    if apci == "u":
        u = U_TYPES.get(m.get("u_function"))
        if u is None:
            r["iec60870_104.utype"] = None  # several function bits: tshark shows them its way
        else:
            _put(r, "iec60870_104.utype", "0x%08x" % u)
        return [r]
    _put(r, "iec60870_104.tx", m.get("send_seq"))
    _put(r, "iec60870_104.rx", m.get("recv_seq"))
    if apci != "i" or "type_id" not in m:
        return [r]
    _put(r, "iec60870_asdu.typeid", m["type_id"])
    _put(r, "iec60870_asdu.sq", _bool(m.get("sq")))
    _put(r, "iec60870_asdu.numix", m.get("num_objects"))
    _put(r, "iec60870_asdu.causetx", m.get("cot"))
    _put(r, "iec60870_asdu.nega", _bool(m.get("negative")))
    _put(r, "iec60870_asdu.test", _bool(m.get("test")))
    _put(r, "iec60870_asdu.oa", m.get("originator_address"))
    _put(r, "iec60870_asdu.addr", m.get("common_address"))
    if "objects" in m:
        _put(r, "iec60870_asdu.ioa", [o["ioa"] for o in m["objects"]])
    else:
        # Unknown type id: we report the objects as hex only.
        r["iec60870_asdu.ioa"] = None
    return [r]
