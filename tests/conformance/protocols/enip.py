# SPDX-License-Identifier: Apache-2.0
"""EtherNet/IP + CIP: tshark's enip/cip fields against our `enip`
transaction events (plugins/dissectors/enip/README.md lists the fields).

Explicit messaging only: connected I/O (UDP 2222, tshark's `cipio`) is
reported per connection and interval, not per packet, so those frames and
our `connected_io` events are left out of this PDU-by-PDU comparison.

A Multiple Service Packet is one PDU: tshark lists the outer service and
then each embedded one in cip.service/class/instance/attribute/genstat, and
expand() rebuilds the same lists from cip.services.
"""

NAME = "enip"
PROTOS = ("enip",)
TSHARK_FILTER = "enip && !cipio"
PDU_START = "enip"
PDU_START_FIELD = "enip.command"
MATCH = ("enip.command", "enip.session")
FIELDS = (
    "enip.command", "enip.session", "enip.status", "enip.length",
    "cip.service", "cip.class", "cip.instance", "cip.attribute", "cip.genstat",
    "enip.lir.vendor", "enip.lir.devtype", "enip.lir.prodcode", "enip.lir.revision",
    "enip.lir.serial", "enip.lir.name", "enip.lir.state", "enip.lir.status",
)

# Attribute ids a reply lists (Get/Set_Attribute_List) come from reply
# bodies whose layout depends on the class: we keep the request's list.
LIST_SERVICES = (0x03, 0x04)


def _hex(v, width):
    return "0x%0*x" % (width, v)


def _id_hex(v):
    # Wireshark prints 8-bit path values as 0x%02x and wider ones as 0x%04x.
    return "0x%02x" % v if v < 0x100 else ("0x%04x" % v if v < 0x10000 else "0x%08x" % v)


def _path(r, items, leg):
    """cip.class/instance/attribute lists over @items (dicts of the event)."""
    classes, insts, attrs = [], [], []
    no_attr = False
    for it in items:
        if "class" in it:
            classes.append(_id_hex(it["class"]))
        if "instance" in it:
            insts.append(_id_hex(it["instance"]))
        if "attribute" in it:
            attrs.append(str(it["attribute"]))
        if it.get("service") in LIST_SERVICES:
            # Reply bodies, and Set_Attribute_List values beyond the first.
            if leg == "response" or it.get("attribute_count", 0) > len(it.get("attributes", [])):
                no_attr = True
            attrs += [str(a) for a in it.get("attributes", [])]
    if classes:
        r["cip.class"] = classes
    if insts:
        r["cip.instance"] = insts
    if no_attr:
        r["cip.attribute"] = None
    elif attrs:
        r["cip.attribute"] = attrs


def expand(event, leg):
    m = event.get("enip", {})
    if "io" in m:
        return []
    side = m.get(leg)
    if side is None:
        return []
    r = {
        "enip.command": [_hex(m["command"], 4)],
        "enip.session": [_hex(side["session"], 8)],
        "enip.status": [_hex(side["status"], 8)],
        "enip.length": [str(side["length"])],
    }
    c = event.get("cip")
    if c is not None and not (leg == "response" and side["status"] != 0):
        subs = c.get("services", [])
        bit = 0x80 if leg == "response" else 0
        r["cip.service"] = [_hex(c["service"] | bit, 2)] + [_hex(s["service"] | bit, 2)
                                                              for s in subs]
        _path(r, [c] + subs, leg)
        if leg == "response":
            st = [_hex(c["general_status"], 2)] if "general_status" in c else []
            st += [_hex(s["general_status"], 2) for s in subs if "general_status" in s]
            if st:
                r["cip.genstat"] = st
    ident = m.get("identity")
    if leg == "response" and ident:
        major, _, minor = ident["revision"].partition(".")
        r["enip.lir.vendor"] = [_hex(ident["vendor_id"], 4)]
        r["enip.lir.devtype"] = [str(ident["device_type"])]
        r["enip.lir.prodcode"] = [str(ident["product_code"])]
        # Wireshark reads major.minor as one big-endian 16-bit value.
        r["enip.lir.revision"] = [str((int(major) << 8) | int(minor))]
        r["enip.lir.serial"] = [_hex(ident["serial"], 8)]
        r["enip.lir.name"] = [ident["product_name"]]
        r["enip.lir.status"] = [_hex(ident["status"], 4)]
        if "state" in ident:
            r["enip.lir.state"] = [_hex(ident["state"], 2)]
    return [r]
