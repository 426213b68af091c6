# SPDX-License-Identifier: Apache-2.0
"""S7comm over ISO-on-TCP: tshark's cotp/s7comm fields against our `s7comm`
transaction events (plugins/dissectors/s7comm/README.md lists the fields).

Each event carries its PDUs in `s7comm.request` and `s7comm.response`, one
sub-object per PDU seen; a one-way message (userdata push) has only the side
that was sent, whatever its leg. COTP connection set-up and release
(`cotp_connect`: CR/CC, `cotp_disconnect`: DR/DC) are events of the same
protocol and are compared too. COTP DT TPDUs are compared through the
S7comm PDU they carry (a PDU split over several DT TPDUs is one record, on
the frame that completes it, on both sides).

S7comm-plus (`s7comm_plus` events) is left out: Wireshark 4.0 has no
dissector for it, so tshark shows those DT TPDUs as bare COTP data; they are
checked by the plugin's unit tests instead.
"""

NAME = "s7comm"
PROTOS = ("s7comm",)
# Frames with an S7comm PDU, or a COTP CR/CC/DR/DC (no DT: its payload is
# compared through s7comm, and S7comm-plus DTs have nothing to compare).
TSHARK_FILTER = "s7comm || cotp.type in {0x0e, 0x0d, 0x08, 0x0c}"
PDU_START = "cotp"
# One COTP TPDU per TPKT, and the filter keeps only TPDUs that are one PDU.
PDU_START_FIELD = "cotp.type"
MATCH = ("cotp.type", "s7comm.header.rosctr", "s7comm.header.pduref")

COTP_FIELDS = (
    "cotp.type", "cotp.srcref", "cotp.destref", "cotp.class", "cotp.tpdu_size",
    "cotp.src-tsap-bytes", "cotp.dst-tsap-bytes", "cotp.cause",
)
HEADER_FIELDS = (
    "s7comm.header.rosctr", "s7comm.header.pduref", "s7comm.header.parlg",
    "s7comm.header.datlg", "s7comm.header.errcls", "s7comm.header.errcod",
)
ITEM_FIELDS = (
    "s7comm.param.item.syntaxid", "s7comm.param.item.transp_size", "s7comm.param.item.length",
    "s7comm.param.item.db", "s7comm.param.item.area", "s7comm.param.item.address",
    "s7comm.param.item.address.byte", "s7comm.param.item.address.bit",
    "s7comm.param.item.address.number",
)
USERDATA_FIELDS = (
    "s7comm.param.userdata.reqres1", "s7comm.param.userdata.type",
    "s7comm.param.userdata.funcgroup", "s7comm.param.userdata.subfunc",
    "s7comm.param.modetrans.subfunc", "s7comm.param.userdata.seq_num",
    "s7comm.param.userdata.dataunitref", "s7comm.param.userdata.lastdataunit",
    "s7comm.data.userdata.szl_id", "s7comm.data.userdata.szl_index",
    "s7comm.blockinfo.blocktype", "s7comm.data.blockinfo.block_number",
)
BLOCK_FIELDS = (
    "s7comm.param.blockcontrol.functionstatus", "s7comm.data.blockcontrol.uploadid",
    "s7comm.param.blockcontrol.filename", "s7comm.data.blockcontrol.file_identifier",
    "s7comm.data.blockcontrol.block_type", "s7comm.data.blockcontrol.block_number",
    "s7comm.data.blockcontrol.dest_filesys", "s7comm.param.blockcontrol.upl_lenstring",
)
FIELDS = COTP_FIELDS + HEADER_FIELDS + (
    "s7comm.param.errcod", "s7comm.param.func",
    "s7comm.param.maxamq_calling", "s7comm.param.maxamq_called", "s7comm.param.pdu_length",
    "s7comm.param.itemcount",
) + ITEM_FIELDS + ("s7comm.data.returncode",) + USERDATA_FIELDS + BLOCK_FIELDS + (
    "s7comm.param.pistart.servicename",
)

COTP_TYPES = {"CR": 0x0e, "CC": 0x0d, "DR": 0x08, "DC": 0x0c, "DT": 0x0f}
# Wireshark lists timers and counters by number, other areas by byte.bit.
NUMBER_AREAS = (0x1c, 0x1d)
# Our events keep this many read/write items (and return codes) per PDU.
MAX_ITEMS = 64
TRUNCATED = "ots.items_truncated"  # pseudo-field: tshark listed more items than we keep

FN_READ_VAR, FN_WRITE_VAR = 0x04, 0x05
FN_START_UPLOAD, FN_UPLOAD, FN_END_UPLOAD = 0x1d, 0x1e, 0x1f
BLOCK_FUNCTIONS = range(0x1a, 0x20)
FN_PI_SERVICE, FN_PLC_STOP, FN_SETUP_COMM = 0x28, 0x29, 0xf0
BLOCK_CODES = {"OB": "08", "CMOD": "09", "DB": "0A", "SDB": "0B", "FC": "0C", "SFC": "0D",
               "FB": "0E", "SFB": "0F"}


def tshark_record(rec):
    """Normalises one PDU as tshark reported it (dict field -> list of str)."""
    if rec.get("cotp.type") == ["0x0f"]:
        # Class 0 DT has no destination reference: Wireshark adds a
        # zero-length one from its own reassembly counter.
        rec.pop("cotp.destref", None)
    areas = rec.get("s7comm.param.item.area", [])
    if len(areas) > MAX_ITEMS:
        # Per-item lists cut where ours stop; byte/bit and number are
        # listed only for their kind of area, so cut them by area.
        n_num = sum(1 for a in areas[:MAX_ITEMS] if int(a, 16) in NUMBER_AREAS)
        n_byte = MAX_ITEMS - n_num
        for f in ITEM_FIELDS:
            if f in rec:
                keep = {"s7comm.param.item.address.number": n_num,
                        "s7comm.param.item.address.byte": n_byte,
                        "s7comm.param.item.address.bit": n_byte}.get(f, MAX_ITEMS)
                rec[f] = rec[f][:keep]
                if not rec[f]:
                    del rec[f]
        rec[TRUNCATED] = ["true"]
    if len(rec.get("s7comm.data.returncode", [])) > MAX_ITEMS:
        rec["s7comm.data.returncode"] = rec["s7comm.data.returncode"][:MAX_ITEMS]
    return rec


def _put(r, field, value, fmt="%d"):
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        if value:
            r[field] = [fmt % v for v in value]
    else:
        r[field] = [fmt % value]


def _cotp_conn(r, m):
    _put(r, "cotp.destref", m.get("dst_ref"), "0x%04x")
    _put(r, "cotp.srcref", m.get("src_ref"), "0x%04x")
    if m["cotp_type"] in ("CR", "CC"):
        _put(r, "cotp.class", m.get("class"))
        _put(r, "cotp.tpdu_size", m.get("tpdu_size"))
        _put(r, "cotp.src-tsap-bytes", m.get("src_tsap"), "%s")
        _put(r, "cotp.dst-tsap-bytes", m.get("dst_tsap"), "%s")
    elif m["cotp_type"] == "DR":
        _put(r, "cotp.cause", m.get("reason"))


def _items(r, m):
    items = m.get("items", [])
    if any(it.get("syntax_id") != 0x10 for it in items):
        # Only S7ANY addresses are in our events; Wireshark decodes the
        # other syntaxes (DBREAD, NCK, symbolic) into other fields.
        for f in ITEM_FIELDS:
            r[f] = None
        return
    _put(r, "s7comm.param.item.syntaxid", [it["syntax_id"] for it in items], "0x%02x")
    _put(r, "s7comm.param.item.transp_size", [it["transport_size"] for it in items])
    _put(r, "s7comm.param.item.length", [it["length"] for it in items])
    _put(r, "s7comm.param.item.db", [it["db"] for it in items])
    _put(r, "s7comm.param.item.area", [it["area"] for it in items], "0x%02x")
    _put(r, "s7comm.param.item.address", [it["address"] for it in items], "0x%06x")
    plain = [it for it in items if it["area"] not in NUMBER_AREAS]
    _put(r, "s7comm.param.item.address.byte", [it["byte"] for it in plain])
    _put(r, "s7comm.param.item.address.bit", [it["bit"] for it in plain])
    _put(r, "s7comm.param.item.address.number",
         [it["address"] & 0xffff for it in items if it["area"] in NUMBER_AREAS])
    if m.get("items_truncated"):
        r[TRUNCATED] = ["true"]


def _plc_filename(name):
    """Wireshark splits a file name only when it is "_TTNNNNNF" with a
    block type between "08" (OB) and "0F" (SFB)."""
    if len(name) != 9 or name[0] != "_":
        return False
    code = (ord(name[1]) << 8) | ord(name[2])
    return 0x3038 <= code <= 0x3046


def _block_control(r, fn, m, leg):
    if leg == "request" or fn != FN_END_UPLOAD:
        _put(r, "s7comm.param.blockcontrol.functionstatus", m.get("function_status"), "0x%02x")
    if fn in (FN_START_UPLOAD, FN_UPLOAD, FN_END_UPLOAD) and (leg == "request" or
                                                              fn == FN_START_UPLOAD):
        # The same 4 bytes are "unknown" to Wireshark for download functions.
        _put(r, "s7comm.data.blockcontrol.uploadid", m.get("upload_id"), "0x%08x")
    name = m.get("file_name")
    if name is not None:
        _put(r, "s7comm.param.blockcontrol.filename", name, "%s")
        if _plc_filename(name):
            _put(r, "s7comm.data.blockcontrol.file_identifier", name[0], "%s")
            _put(r, "s7comm.data.blockcontrol.block_type", BLOCK_CODES.get(m.get("block_type")),
                 "%s")
            _put(r, "s7comm.data.blockcontrol.block_number", m.get("block_number"), "%05d")
            _put(r, "s7comm.data.blockcontrol.dest_filesys", m.get("file_system"), "%s")
    _put(r, "s7comm.param.blockcontrol.upl_lenstring", m.get("block_length"), "%s")


def _job(r, m, leg):
    fn = m.get("function")
    _put(r, "s7comm.param.func", fn, "0x%02x")
    if fn == FN_SETUP_COMM:
        _put(r, "s7comm.param.maxamq_calling", m.get("max_amq_calling"))
        _put(r, "s7comm.param.maxamq_called", m.get("max_amq_called"))
        _put(r, "s7comm.param.pdu_length", m.get("pdu_size"))
    elif fn in (FN_READ_VAR, FN_WRITE_VAR):
        _put(r, "s7comm.param.itemcount", m.get("item_count"))
        if leg == "request":
            _items(r, m)
    elif fn in BLOCK_FUNCTIONS:
        _block_control(r, fn, m, leg)
    elif fn in (FN_PI_SERVICE, FN_PLC_STOP):
        _put(r, "s7comm.param.pistart.servicename", m.get("pi_service"), "%s")
    _put(r, "s7comm.data.returncode", m.get("return_codes"), "0x%02x")


def _userdata(r, m):
    group = m.get("function_group")
    _put(r, "s7comm.param.userdata.reqres1", m.get("method"), "0x%02x")
    _put(r, "s7comm.param.userdata.type", m.get("type"))
    _put(r, "s7comm.param.userdata.funcgroup", group)
    # Mode transitions (group 0) have their own subfunction field.
    _put(r, "s7comm.param.modetrans.subfunc" if group == 0 else "s7comm.param.userdata.subfunc",
         m.get("subfunction"))
    _put(r, "s7comm.param.userdata.seq_num", m.get("sequence_number"))
    _put(r, "s7comm.param.userdata.dataunitref", m.get("data_unit_ref"))
    if "last_data_unit" in m:
        # 0x00: this is the last data unit; 0x01: more follow.
        _put(r, "s7comm.param.userdata.lastdataunit", 0 if m["last_data_unit"] else 1, "0x%02x")
    _put(r, "s7comm.param.errcod", m.get("userdata_error_code"), "0x%04x")
    _put(r, "s7comm.data.returncode", m.get("return_codes"), "0x%02x")
    _put(r, "s7comm.data.userdata.szl_id", m.get("szl_id"), "0x%04x")
    _put(r, "s7comm.data.userdata.szl_index", m.get("szl_index"), "0x%04x")
    if group == 3 and m.get("type") == 4:
        _put(r, "s7comm.blockinfo.blocktype", m.get("block_type"), "%s")
        _put(r, "s7comm.data.blockinfo.block_number", m.get("block_number"), "%s")
    elif group == 3:
        # Block lists and block info replies: our events keep no block list.
        r["s7comm.blockinfo.blocktype"] = None
    elif group in (1, 2):
        # Variable tables and cyclic reads nest read/write items in the
        # data part (more return codes, items, item counts); our events keep
        # the first data item's return code only.
        for f in ("s7comm.data.returncode", "s7comm.param.itemcount") + ITEM_FIELDS:
            r[f] = None


def _s7(r, m, leg):
    _put(r, "s7comm.header.rosctr", m.get("rosctr"))
    _put(r, "s7comm.header.pduref", m.get("pdu_ref"))
    _put(r, "s7comm.header.parlg", m.get("param_length"))
    _put(r, "s7comm.header.datlg", m.get("data_length"))
    if "error_class" in m:
        cls, code = m["error_class"], m["error_code"]
        _put(r, "s7comm.header.errcls", cls, "0x%02x")
        _put(r, "s7comm.header.errcod", code, "0x%02x")
        if cls or code:
            # Wireshark adds the pair as one parameter error code.
            _put(r, "s7comm.param.errcod", (cls << 8) | code, "0x%04x")
    if m.get("rosctr") == 7:
        _userdata(r, m)
    else:
        _job(r, m, leg)


def expand(event, leg):
    """The PDU record (dict field -> list of str; None: do not compare) that
    transaction @event says was on the wire for @leg ("request"/"response")."""
    obj = event.get("s7comm", {})
    m = obj.get(leg)
    if m is None and leg == "request" and event["status"] in ("unsolicited", "no_response"):
        m = obj.get("response")  # a push from the PLC: its one PDU is the event's only leg
    if m is None:
        return []
    r = {}
    ctype = m.get("cotp_type")
    _put(r, "cotp.type", COTP_TYPES.get(ctype), "0x%02x")
    if ctype == "DT":
        _s7(r, m, leg)
    else:
        _cotp_conn(r, m)
    if leg == "request" and obj.get("request_truncated"):
        # Only the first bytes of a long request are kept for pairing.
        for f in FIELDS:
            if f not in ("cotp.type",) + HEADER_FIELDS:
                r[f] = None
    return [r]
