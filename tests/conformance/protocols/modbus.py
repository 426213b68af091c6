# SPDX-License-Identifier: Apache-2.0
"""Modbus/TCP: tshark's mbtcp/modbus fields against our `modbus` transaction
events (plugins/dissectors/modbus/README.md lists the event fields).

A protocol table is a module with the names below; `compare` loads every
module in this folder. Values are compared as tshark prints them (decimal,
or 0x.. for fields Wireshark shows in hex, bytes as plain hex).
"""

NAME = "modbus"
# Event "proto" values this table covers.
PROTOS = ("modbus",)
# Display filter selecting the frames that carry a PDU.
TSHARK_FILTER = "mbtcp"
# PDML protocol that begins each PDU when a frame carries several.
PDU_START = "mbtcp"
# A field present exactly once per PDU (counts the PDUs of a frame).
PDU_START_FIELD = "mbtcp.trans_id"
# Besides time and addresses, PDUs are matched on these.
MATCH = ("mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code")
# Everything compared (asked from tshark with -e).
FIELDS = (
    "mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code", "modbus.exception_code",
    "modbus.reference_num", "modbus.reference_num_32", "modbus.reference_type",
    "modbus.word_cnt", "modbus.bit_cnt", "modbus.byte_cnt", "modbus.byte_cnt_16",
    "modbus.read_reference_num", "modbus.read_word_cnt",
    "modbus.write_reference_num", "modbus.write_word_cnt",
    "modbus.and_mask", "modbus.or_mask", "modbus.diagnostic_code",
    "modbus.ev_status", "modbus.ev_count", "modbus.ev_msg_count", "modbus.event",
    "modbus.mei", "modbus.read_device_id", "modbus.object_id", "modbus.conformity_level",
    "modbus.more_follows", "modbus.next_object_id", "modbus.num_objects", "modbus.objects_len",
    "modbus.object_str_value", "modbus.object_value",
    "modbus.regval_uint16", "modbus.bitval", "modbus.data",
)

# Our events carry at most this many register/coil values.
MAX_VALUES = 16
TRUNCATED = "ots.values_truncated"  # pseudo-field: tshark listed more than MAX_VALUES

# tshark's modbus.data is not comparable for these: the diagnostics data
# field depends on the sub-function (8), coil bytes carry padding bits we do
# not keep (15), and Wireshark 4.0 attributes the rest of the PDU to the
# first read-file sub-response (20).
NO_DATA = (8, 15, 20)


def tshark_record(rec):
    """Normalises one PDU as tshark reported it (dict field -> list of str)."""
    fc = int(rec.get("modbus.func_code", ["0"])[0])
    if fc in NO_DATA:
        rec.pop("modbus.data", None)
    for f in ("modbus.regval_uint16", "modbus.bitval"):
        if len(rec.get(f, [])) > MAX_VALUES:
            rec[f] = rec[f][:MAX_VALUES]
            rec[TRUNCATED] = ["true"]
    return rec


def _put(r, field, value):
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        r[field] = [str(v) for v in value]
    else:
        r[field] = [str(value)]


def _regs_hex(values):
    return "".join("%04x" % v for v in values)


def _coil_hex(values):
    return "ff00" if values and values[0] else "0000"


def _values(r, m, key, field, bits=False):
    """Register/coil values, and the truncation pseudo-field."""
    if key not in m:
        return
    _put(r, field, ["1" if v else "0" for v in m[key]] if bits else m[key])
    if m.get(key + "_truncated"):
        r[TRUNCATED] = ["true"]


def _file_requests(r, m):
    recs = m.get("file_records", [])
    _put(r, "modbus.reference_type", [x["reference_type"] for x in recs])
    _put(r, "modbus.reference_num_32", [(x["file_number"] << 16) | x["record_number"] for x in recs])
    _put(r, "modbus.word_cnt", [x["record_length"] for x in recs])
    if any("data" in x for x in recs):
        _put(r, "modbus.data", [x["data"] for x in recs if "data" in x])


def _request(r, fc, m):
    g = m.get
    if fc in (1, 2):
        _put(r, "modbus.reference_num", g("address"))
        _put(r, "modbus.bit_cnt", g("quantity"))
    elif fc in (3, 4):
        _put(r, "modbus.reference_num", g("address"))
        _put(r, "modbus.word_cnt", g("quantity"))
    elif fc == 5:
        _put(r, "modbus.reference_num", g("address"))
        if "values" in m:
            _put(r, "modbus.data", _coil_hex(m["values"]))
    elif fc == 6:
        _put(r, "modbus.reference_num", g("address"))
        if "values" in m:
            _put(r, "modbus.data", _regs_hex(m["values"]))
    elif fc == 8:
        _put(r, "modbus.diagnostic_code", g("sub_function"))
    elif fc == 15:
        _put(r, "modbus.reference_num", g("address"))
        _put(r, "modbus.bit_cnt", g("quantity"))
        _put(r, "modbus.byte_cnt", g("byte_count"))
    elif fc == 16:
        _put(r, "modbus.reference_num", g("address"))
        _put(r, "modbus.word_cnt", g("quantity"))
        _put(r, "modbus.byte_cnt", g("byte_count"))
        _values(r, m, "values", "modbus.regval_uint16")
    elif fc in (20, 21):
        _put(r, "modbus.byte_cnt", g("byte_count"))
        _file_requests(r, m)
    elif fc == 22:
        _put(r, "modbus.reference_num", g("address"))
        if "and_mask" in m:
            _put(r, "modbus.and_mask", "0x%04x" % m["and_mask"])
        if "or_mask" in m:
            _put(r, "modbus.or_mask", "0x%04x" % m["or_mask"])
    elif fc == 23:
        _put(r, "modbus.read_reference_num", g("read_address"))
        _put(r, "modbus.read_word_cnt", g("read_quantity"))
        _put(r, "modbus.write_reference_num", g("write_address"))
        _put(r, "modbus.write_word_cnt", g("write_quantity"))
        _put(r, "modbus.byte_cnt", g("byte_count"))
        if "values" in m:
            r["modbus.data"] = None if g("values_truncated") else [_regs_hex(m["values"])]
    elif fc == 24:
        _put(r, "modbus.reference_num", g("address"))
    elif fc == 43:
        _put(r, "modbus.mei", g("mei_type"))
        if g("mei_type") == 14:
            _put(r, "modbus.read_device_id", g("read_device_id_code"))
            _put(r, "modbus.object_id", g("object_id"))
        elif "mei_type" in m:
            _put(r, "modbus.data", "%02x%s" % (m["mei_type"], g("data", "")))
    elif g("data"):
        _put(r, "modbus.data", g("data"))


def _device_objects(r, m):
    objs = m.get("objects", [])
    _put(r, "modbus.object_id", [o["id"] for o in objs])
    lens, strs, raws = [], [], []
    for o in objs:
        raw = bytes.fromhex(o["value_hex"]) if "value_hex" in o else o.get("value", "").encode()
        lens.append(len(raw))
        if o["id"] < 0x80:
            strs.append(o.get("value", ""))
        else:
            raws.append(raw.hex())
    _put(r, "modbus.objects_len", lens)
    _put(r, "modbus.object_str_value", strs)
    _put(r, "modbus.object_value", raws)


def _response(r, fc, m):
    g = m.get

    def echo(name):
        return g("response_" + name, g(name))

    if "exception_code" in m:
        _put(r, "modbus.exception_code", m["exception_code"])
        return
    if fc in (1, 2):
        _put(r, "modbus.byte_cnt", g("response_byte_count"))
        _values(r, m, "values", "modbus.bitval", bits=True)
    elif fc in (3, 4):
        _put(r, "modbus.byte_cnt", g("response_byte_count"))
        _values(r, m, "values", "modbus.regval_uint16")
    elif fc == 5:
        _put(r, "modbus.reference_num", echo("address"))
        if echo("values") is not None:
            _put(r, "modbus.data", _coil_hex(echo("values")))
    elif fc == 6:
        _put(r, "modbus.reference_num", echo("address"))
        if echo("values") is not None:
            _put(r, "modbus.data", _regs_hex(echo("values")))
    elif fc == 7:
        if "exception_status" in m:
            _put(r, "modbus.data", "%02x" % m["exception_status"])
    elif fc == 8:
        _put(r, "modbus.diagnostic_code", echo("sub_function"))
    elif fc == 11:
        if "comm_status" in m:
            _put(r, "modbus.ev_status", "0x%04x" % m["comm_status"])
        _put(r, "modbus.ev_count", g("event_count"))
    elif fc == 12:
        _put(r, "modbus.byte_cnt", g("response_byte_count"))
        if "comm_status" in m:
            _put(r, "modbus.ev_status", "0x%04x" % m["comm_status"])
        _put(r, "modbus.ev_count", g("event_count"))
        _put(r, "modbus.ev_msg_count", g("message_count"))
        if g("events"):
            _put(r, "modbus.event", list(bytes.fromhex(m["events"])))
    elif fc in (15, 16):
        _put(r, "modbus.reference_num", echo("address"))
        _put(r, "modbus.bit_cnt" if fc == 15 else "modbus.word_cnt", echo("quantity"))
    elif fc == 17:
        if "response_byte_count" in m:
            data = "%02x" % m["response_byte_count"] + g("server_id", "")
            if "run_indicator" in m:
                data += "ff" if m["run_indicator"] else "00"
            _put(r, "modbus.data", data + g("additional_data", ""))
    elif fc == 20:
        recs = g("response_file_records", [])
        if "response_byte_count" in m:
            _put(r, "modbus.byte_cnt", [m["response_byte_count"]] + [x["byte_count"] for x in recs])
        _put(r, "modbus.reference_type", [x["reference_type"] for x in recs])
    elif fc == 21:
        _put(r, "modbus.byte_cnt", g("response_byte_count"))
        _file_requests(r, m)
    elif fc == 22:
        _put(r, "modbus.reference_num", echo("address"))
        if echo("and_mask") is not None:
            _put(r, "modbus.and_mask", "0x%04x" % echo("and_mask"))
        if echo("or_mask") is not None:
            _put(r, "modbus.or_mask", "0x%04x" % echo("or_mask"))
    elif fc == 23:
        _put(r, "modbus.byte_cnt", g("response_byte_count"))
        if "read_values" in m:
            r["modbus.data"] = None if g("read_values_truncated") else [_regs_hex(m["read_values"])]
    elif fc == 24:
        _put(r, "modbus.byte_cnt_16", g("response_byte_count"))
        _put(r, "modbus.word_cnt", g("fifo_count"))
        if "values" in m:
            r["modbus.data"] = None if g("values_truncated") else [_regs_hex(m["values"])]
    elif fc == 43:
        mei = echo("mei_type")
        _put(r, "modbus.mei", mei)
        if mei == 14:
            _put(r, "modbus.read_device_id", echo("read_device_id_code"))
            if "conformity_level" in m:
                _put(r, "modbus.conformity_level", "0x%02x" % m["conformity_level"])
            if "more_follows" in m:
                _put(r, "modbus.more_follows", "0xff" if m["more_follows"] else "0x00")
            _put(r, "modbus.next_object_id", g("next_object_id"))
            _put(r, "modbus.num_objects", g("number_of_objects"))
            _device_objects(r, m)
        elif mei is not None:
            _put(r, "modbus.data", "%02x%s" % (mei, g("response_data", "")))
    elif g("response_data"):
        _put(r, "modbus.data", g("response_data"))


def expand(event, leg):
    """The PDU records (dict field -> list of str; None: do not compare) that
    transaction @event says were on the wire for @leg ("request"/"response")."""
    m = event.get("modbus", {})
    fc = event["function"]
    r = {}
    _put(r, "mbtcp.trans_id", m.get("transaction_id"))
    _put(r, "mbtcp.unit_id", m.get("unit_id"))
    if leg == "request":
        _put(r, "modbus.func_code", fc)
        _request(r, fc, m)
    else:
        rfc = m.get("response_function", fc) & 0x7F
        _put(r, "modbus.func_code", rfc)
        if rfc == fc:
            _response(r, fc, m)
        elif "exception_code" in m:
            _put(r, "modbus.exception_code", m["exception_code"])
        else:
            # A response to another function: the event keeps no fields of it.
            for f in FIELDS[3:]:
                r[f] = None
    return [r]
