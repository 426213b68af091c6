/* SPDX-License-Identifier: Apache-2.0 */

/* CIP layer of the EtherNet/IP dissector: service codes, padded EPATHs,
 * general/extended status, Multiple Service Packet, Unconnected Send,
 * Forward Open / Close and the Identity object's Get_Attributes_All reply. */

#include <stdio.h>

#include "enip-cip.h"

#define CIP_REPLY_BIT 0x80

enum {
    SVC_GET_ATTRIBUTES_ALL = 0x01,
    SVC_GET_ATTRIBUTE_LIST = 0x03,
    SVC_SET_ATTRIBUTE_LIST = 0x04,
    SVC_MULTIPLE_SERVICE_PACKET = 0x0a,
    SVC_FORWARD_CLOSE = 0x4e,
    SVC_UNCONNECTED_SEND = 0x52,
    SVC_FORWARD_OPEN = 0x54,
    SVC_LARGE_FORWARD_OPEN = 0x5b,
};

enum {
    CLASS_IDENTITY = 0x01,
    CLASS_MESSAGE_ROUTER = 0x02,
    CLASS_CONNECTION_MANAGER = 0x06,
    CLASS_FILE = 0x37,
    CLASS_PCCC = 0x67,
    CLASS_SYMBOL = 0x6b,
    CLASS_TEMPLATE = 0x6c,
    CLASS_NVS = 0xa1,
};

typedef struct {
    CipRaiseFunc raise;
    gpointer user;
} Ctx;

static void bad(const Ctx *c, const char *code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
bad(const Ctx *c, const char *code, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    g_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->raise(c->user, code, msg);
}

/* ---- names and classes ----------------------------------------------------- */

static const char *const common_service_names[0x1d] = {
    [0x01] = "get_attributes_all",
    [0x02] = "set_attributes_all",
    [0x03] = "get_attribute_list",
    [0x04] = "set_attribute_list",
    [0x05] = "reset",
    [0x06] = "start",
    [0x07] = "stop",
    [0x08] = "create",
    [0x09] = "delete",
    [0x0a] = "multiple_service_packet",
    [0x0d] = "apply_attributes",
    [0x0e] = "get_attribute_single",
    [0x10] = "set_attribute_single",
    [0x11] = "find_next_object_instance",
    [0x14] = "error_response",
    [0x15] = "restore",
    [0x16] = "save",
    [0x17] = "nop",
    [0x18] = "get_member",
    [0x19] = "set_member",
    [0x1a] = "insert_member",
    [0x1b] = "remove_member",
    [0x1c] = "group_sync",
};

static const OtsOpClass common_service_classes[0x1d] = {
    [0x01] = OTS_OP_READ,      [0x02] = OTS_OP_WRITE,   [0x03] = OTS_OP_READ,
    [0x04] = OTS_OP_WRITE,     [0x05] = OTS_OP_RESTART, [0x06] = OTS_OP_RUN_STATE,
    [0x07] = OTS_OP_RUN_STATE, [0x08] = OTS_OP_CONFIG,  [0x09] = OTS_OP_CONFIG,
    [0x0d] = OTS_OP_CONFIG,    [0x0e] = OTS_OP_READ,    [0x10] = OTS_OP_WRITE,
    [0x11] = OTS_OP_READ,      [0x15] = OTS_OP_CONFIG,  [0x16] = OTS_OP_CONFIG,
    [0x18] = OTS_OP_READ,      [0x19] = OTS_OP_WRITE,   [0x1a] = OTS_OP_WRITE,
    [0x1b] = OTS_OP_WRITE,
};

static gboolean
is_logix_target(const CipService *sv)
{
    if (sv->flags & CIP_HAS_SYMBOL)
        return TRUE;
    return (sv->flags & CIP_HAS_CLASS) &&
           (sv->class_id == CLASS_SYMBOL || sv->class_id == CLASS_TEMPLATE);
}

/* Object-specific services (0x4b..0x63) mean different things per class. */
static void
classify(const CipService *sv, const char **name, OtsOpClass *op)
{
    guint8 svc = sv->service;
    gboolean has_class = (sv->flags & CIP_HAS_CLASS) != 0;
    guint32 cls = sv->class_id;
    *name = "unknown";
    *op = OTS_OP_OTHER;
    if (svc < G_N_ELEMENTS(common_service_names) && common_service_names[svc]) {
        *name = common_service_names[svc];
        *op = common_service_classes[svc];
    } else if (svc >= 0x4b && svc <= 0x63) {
        *name = "object_specific";
        if (has_class && cls == CLASS_CONNECTION_MANAGER) {
            *op = OTS_OP_SESSION;
            switch (svc) {
            case 0x4e:
                *name = "forward_close";
                break;
            case 0x52:
                *name = "unconnected_send";
                *op = OTS_OP_OTHER;
                break;
            case 0x54:
                *name = "forward_open";
                break;
            case 0x56:
                *name = "get_connection_data";
                *op = OTS_OP_READ;
                break;
            case 0x57:
                *name = "search_connection_data";
                *op = OTS_OP_READ;
                break;
            case 0x5a:
                *name = "get_connection_owner";
                *op = OTS_OP_READ;
                break;
            case 0x5b:
                *name = "large_forward_open";
                break;
            default:
                *op = OTS_OP_OTHER;
                break;
            }
        } else if (has_class && cls == CLASS_FILE) {
            *op = OTS_OP_FILE_TRANSFER;
            switch (svc) {
            case 0x4b:
                *name = "initiate_upload";
                *op = OTS_OP_PROGRAM_UPLOAD;
                break;
            case 0x4c:
                *name = "initiate_download";
                *op = OTS_OP_PROGRAM_DOWNLOAD;
                break;
            case 0x4d:
                *name = "initiate_partial_read";
                break;
            case 0x4e:
                *name = "initiate_partial_write";
                break;
            case 0x4f:
                *name = "upload_transfer";
                *op = OTS_OP_PROGRAM_UPLOAD;
                break;
            case 0x50:
                *name = "download_transfer";
                *op = OTS_OP_PROGRAM_DOWNLOAD;
                break;
            case 0x51:
                *name = "clear_file";
                break;
            default:
                break;
            }
        } else if (has_class && cls == CLASS_PCCC && svc == 0x4b) {
            *name = "execute_pccc";
        } else if (is_logix_target(sv)) {
            switch (svc) {
            case 0x4c:
                *name = "read_tag";
                *op = OTS_OP_READ;
                break;
            case 0x4d:
                *name = "write_tag";
                *op = OTS_OP_WRITE;
                break;
            case 0x4e:
                *name = "read_modify_write_tag";
                *op = OTS_OP_WRITE;
                break;
            case 0x52:
                *name = "read_tag_fragmented";
                *op = OTS_OP_READ;
                break;
            case 0x53:
                *name = "write_tag_fragmented";
                *op = OTS_OP_WRITE;
                break;
            case 0x55:
                *name = "get_instance_attribute_list";
                *op = OTS_OP_READ;
                break;
            default:
                break;
            }
        }
    }
    /* Non-volatile storage: whatever changes it writes firmware. */
    if (has_class && cls == CLASS_NVS && *op != OTS_OP_READ)
        *op = OTS_OP_FIRMWARE;
}

/* For a packet of several services: the class that matters most. */
static int
op_rank(OtsOpClass op)
{
    switch (op) {
    case OTS_OP_OTHER:
        return 0;
    case OTS_OP_SESSION:
        return 1;
    case OTS_OP_READ:
        return 2;
    case OTS_OP_WRITE:
        return 3;
    case OTS_OP_CONFIG:
        return 4;
    default:
        return 5;
    }
}

static const char *const general_status_names[] = {
    "success",
    "connection_failure",
    "resource_unavailable",
    "invalid_parameter_value",
    "path_segment_error",
    "path_destination_unknown",
    "partial_transfer",
    "connection_lost",
    "service_not_supported",
    "invalid_attribute_value",
    "attribute_list_error",
    "already_in_requested_mode",
    "object_state_conflict",
    "object_already_exists",
    "attribute_not_settable",
    "privilege_violation",
    "device_state_conflict",
    "reply_data_too_large",
    "fragmentation_of_a_primitive_value",
    "not_enough_data",
    "attribute_not_supported",
    "too_much_data",
    "object_does_not_exist",
    "service_fragmentation_sequence_not_in_progress",
    "no_stored_attribute_data",
    "store_operation_failure",
    "routing_failure_request_too_large",
    "routing_failure_response_too_large",
    "missing_attribute_list_entry_data",
    "invalid_attribute_value_list",
    "embedded_service_error",
    "vendor_specific_error",
    "invalid_parameter",
    "write_once_value_or_medium_already_written",
    "invalid_reply_received",
    "buffer_overflow",
    "message_format_error",
    "key_failure_in_path",
    "path_size_invalid",
    "unexpected_attribute_in_list",
    "invalid_member_id",
    "member_not_settable",
    "group_2_only_server_general_failure",
    "unknown_modbus_error",
    "attribute_not_gettable",
};

const char *
cip_general_status_name(guint8 status)
{
    if (status < G_N_ELEMENTS(general_status_names))
        return general_status_names[status];
    return "unknown";
}

static gboolean
status_is_error(guint8 status)
{
    return status != 0x00 && status != 0x06; /* partial transfer is not an error */
}

const char *
cip_vendor_name(guint16 vendor)
{
    switch (vendor) {
    case 1:
        return "Rockwell Automation/Allen-Bradley";
    case 5:
        return "Rockwell Automation/Reliance Electric";
    case 26:
        return "Festo";
    case 40:
        return "WAGO";
    case 44:
        return "Parker Hannifin";
    case 47:
        return "OMRON";
    case 50:
        return "Phoenix Contact";
    case 58:
        return "Danfoss";
    case 90:
        return "HMS Industrial Networks";
    case 108:
        return "Beckhoff";
    case 161:
        return "Turck";
    case 243:
        return "Schneider Electric";
    case 252:
        return "SICK";
    case 283:
        return "Hilscher";
    case 356:
        return "Siemens";
    case 678:
        return "Cognex";
    case 1105:
        return "Schneider Electric";
    default:
        return NULL;
    }
}

const char *
cip_device_type_name(guint16 type)
{
    switch (type) {
    case 0x00:
        return "generic_device";
    case 0x02:
        return "ac_drive";
    case 0x03:
        return "motor_overload";
    case 0x04:
        return "limit_switch";
    case 0x05:
        return "inductive_proximity_switch";
    case 0x06:
        return "photoelectric_sensor";
    case 0x07:
        return "general_purpose_discrete_io";
    case 0x09:
        return "resolver";
    case 0x0c:
        return "communications_adapter";
    case 0x0e:
        return "programmable_logic_controller";
    case 0x10:
        return "position_controller";
    case 0x13:
        return "dc_drive";
    case 0x15:
        return "contactor";
    case 0x16:
        return "motor_starter";
    case 0x17:
        return "soft_start";
    case 0x18:
        return "human_machine_interface";
    case 0x1a:
        return "mass_flow_controller";
    case 0x1b:
        return "pneumatic_valve";
    case 0x1c:
        return "vacuum_pressure_gauge";
    case 0x1d:
        return "process_control_value";
    case 0x1e:
        return "residual_gas_analyzer";
    case 0x1f:
        return "dc_power_generator";
    case 0x20:
        return "rf_power_generator";
    case 0x21:
        return "turbomolecular_vacuum_pump";
    case 0x22:
        return "encoder";
    case 0x23:
        return "safety_discrete_io";
    case 0x24:
        return "fluid_flow_controller";
    case 0x25:
        return "cip_motion_drive";
    case 0x26:
        return "compo_net_repeater";
    case 0x27:
        return "mass_flow_controller_enhanced";
    case 0x28:
        return "cip_modbus_device";
    case 0x2b:
        return "generic_device_keyable";
    case 0x2c:
        return "managed_switch";
    case 0x32:
        return "ethernet_ip_physical_layer_gateway";
    case 0x96:
        return "embedded_component";
    default:
        return NULL;
    }
}

/* ---- paths ------------------------------------------------------------------ */

static void
symbol_append(CipService *sv, const char *text, gsize n)
{
    gsize cur = strlen(sv->symbol);
    for (gsize i = 0; i < n && cur + 1 < sizeof(sv->symbol); i++) {
        char ch = text[i];
        sv->symbol[cur++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    sv->symbol[cur] = '\0';
}

static void
set_logical(CipService *sv, guint type, guint32 v)
{
    switch (type) {
    case 0:
        if (!(sv->flags & CIP_HAS_CLASS)) {
            sv->flags |= CIP_HAS_CLASS;
            sv->class_id = v;
        }
        break;
    case 1:
        if (!(sv->flags & CIP_HAS_INSTANCE)) {
            sv->flags |= CIP_HAS_INSTANCE;
            sv->instance = v;
        }
        break;
    case 2:
        if (sv->flags & CIP_HAS_SYMBOL) {
            /* An array index after a tag name. */
            char idx[16];
            int n = g_snprintf(idx, sizeof(idx), "[%u]", v);
            symbol_append(sv, idx, (gsize)MAX(n, 0));
        }
        if (!(sv->flags & CIP_HAS_MEMBER)) {
            sv->flags |= CIP_HAS_MEMBER;
            sv->member = v;
        }
        break;
    case 3:
        if (!(sv->flags & CIP_HAS_CONN_POINT)) {
            sv->flags |= CIP_HAS_CONN_POINT;
            sv->conn_point = v;
        }
        break;
    case 4:
        if (!(sv->flags & CIP_HAS_ATTRIBUTE)) {
            sv->flags |= CIP_HAS_ATTRIBUTE;
            sv->attribute = v;
        }
        break;
    default:
        break;
    }
}

/* Parses a padded EPATH. Returns FALSE (after raising bad_path) when a
 * segment is truncated or unknown; what was parsed before stays. */
static gboolean
parse_path(const Ctx *c, OtsReader *p, CipService *sv)
{
    while (ots_reader_remaining(p) > 0) {
        guint8 seg;
        ots_reader_get_u8(p, &seg);
        switch (seg & 0xe0) {
        case 0x00: { /* port segment */
            guint8 size = 1;
            gboolean ok = TRUE;
            /* Port 15 means a 16-bit port id follows (after the size byte). */
            if (seg & 0x10) {
                ok = ok && ots_reader_get_u8(p, &size);
                if (ok && (seg & 0x0f) == 0x0f)
                    ok = ots_reader_skip(p, 2);
                ok = ok && ots_reader_skip(p, size + (size & 1u));
            } else {
                if ((seg & 0x0f) == 0x0f)
                    ok = ots_reader_skip(p, 2);
                ok = ok && ots_reader_skip(p, 1);
            }
            if (!ok) {
                bad(c, "bad_path", "truncated port segment 0x%02x", seg);
                return FALSE;
            }
            break;
        }
        case 0x20: { /* logical segment */
            guint type = (seg >> 2) & 7, fmt = seg & 3;
            guint8 v8 = 0, pad;
            guint16 v16 = 0;
            guint32 v32 = 0;
            if (type == 5) { /* electronic key */
                guint8 kf;
                if (!ots_reader_get_u8(p, &kf) || kf != 4 || !ots_reader_skip(p, 8)) {
                    bad(c, "bad_path", "bad electronic key segment");
                    return FALSE;
                }
                break;
            }
            if (type == 6 || type == 7) { /* service id, extended logical */
                if (!ots_reader_skip(p, 1)) {
                    bad(c, "bad_path", "truncated logical segment 0x%02x", seg);
                    return FALSE;
                }
                break;
            }
            gboolean ok;
            if (fmt == 0) {
                ok = ots_reader_get_u8(p, &v8);
                v32 = v8;
            } else if (fmt == 1) {
                ok = ots_reader_get_u8(p, &pad) && ots_reader_get_u16_le(p, &v16);
                v32 = v16;
            } else if (fmt == 2)
                ok = ots_reader_get_u8(p, &pad) && ots_reader_get_u32_le(p, &v32);
            else
                ok = FALSE;
            if (!ok) {
                bad(c, "bad_path", "truncated or reserved logical segment 0x%02x", seg);
                return FALSE;
            }
            set_logical(sv, type, v32);
            break;
        }
        case 0x40: /* network segment */
            if (seg == 0x5f) {
                guint16 words;
                if (!ots_reader_get_u16_le(p, &words) || !ots_reader_skip(p, 2 * (gsize)words)) {
                    bad(c, "bad_path", "truncated extended network segment");
                    return FALSE;
                }
            } else if (!ots_reader_skip(p, 1)) {
                bad(c, "bad_path", "truncated network segment 0x%02x", seg);
                return FALSE;
            }
            break;
        case 0x60: { /* symbolic segment */
            guint8 n = seg & 0x1f;
            const guint8 *text;
            if (n == 0 || !ots_reader_get_data(p, n, &text)) {
                bad(c, "bad_path", "bad symbolic segment 0x%02x", seg);
                return FALSE;
            }
            if (sv->flags & CIP_HAS_SYMBOL)
                symbol_append(sv, ".", 1);
            sv->flags |= CIP_HAS_SYMBOL;
            symbol_append(sv, (const char *)text, n);
            break;
        }
        case 0x80: /* data segment */
            if (seg == 0x91) {
                guint8 n;
                const guint8 *text;
                if (!ots_reader_get_u8(p, &n) || !ots_reader_get_data(p, n, &text) ||
                    !ots_reader_skip(p, n & 1u)) {
                    bad(c, "bad_path", "truncated ANSI symbol segment");
                    return FALSE;
                }
                if (sv->flags & CIP_HAS_SYMBOL)
                    symbol_append(sv, ".", 1);
                sv->flags |= CIP_HAS_SYMBOL;
                symbol_append(sv, (const char *)text, n);
            } else if (seg == 0x80) {
                guint8 words;
                if (!ots_reader_get_u8(p, &words) || !ots_reader_skip(p, 2 * (gsize)words)) {
                    bad(c, "bad_path", "truncated simple data segment");
                    return FALSE;
                }
            } else {
                bad(c, "bad_path", "unknown data segment 0x%02x", seg);
                return FALSE;
            }
            break;
        default:
            bad(c, "bad_path", "unknown path segment 0x%02x", seg);
            return FALSE;
        }
    }
    return TRUE;
}

/* Service byte, path size and path of a request; @body gets the rest. */
static gboolean
parse_request_header(const Ctx *c, OtsReader *r, CipService *sv, OtsReader *body)
{
    guint8 svc, words;
    OtsReader path;
    memset(sv, 0, sizeof(*sv));
    if (!ots_reader_get_u8(r, &svc)) {
        bad(c, "bad_cip", "empty CIP request");
        return FALSE;
    }
    sv->service = svc & 0x7f;
    if (svc & CIP_REPLY_BIT)
        bad(c, "bad_cip", "request with the reply bit set (service 0x%02x)", svc);
    if (!ots_reader_get_u8(r, &words) || !ots_reader_get_sub_reader(r, &path, 2 * (gsize)words)) {
        bad(c, "bad_path", "service 0x%02x: request path runs past the message", svc);
        ots_reader_init(body, NULL, 0);
        return FALSE;
    }
    parse_path(c, &path, sv);
    ots_reader_get_sub_reader(r, body, ots_reader_remaining(r));
    return TRUE;
}

/* Get_Attribute_List: count and ids. Set_Attribute_List: count, then id and
 * value pairs whose sizes depend on the class: only the first id is sure. */
static void
parse_attribute_list(OtsReader *body, CipService *sv)
{
    guint16 count, id;
    if (!ots_reader_get_u16_le(body, &count))
        return;
    sv->attr_count = count;
    guint max = sv->service == SVC_GET_ATTRIBUTE_LIST ? CIP_MAX_ATTR_LIST : 1;
    for (guint i = 0; i < count && i < max && ots_reader_get_u16_le(body, &id); i++)
        sv->attrs[sv->n_attrs++] = id;
}

static void
parse_forward_open(const Ctx *c, OtsReader *b, CipMessage *m, gboolean large)
{
    CipForward *f = &m->fwd;
    guint16 p16 = 0;
    gboolean ok =
        ots_reader_get_u8(b, &f->priority_tick) && ots_reader_get_u8(b, &f->timeout_ticks) &&
        ots_reader_get_u32_le(b, &f->ot_conn_id) && ots_reader_get_u32_le(b, &f->to_conn_id) &&
        ots_reader_get_u16_le(b, &f->conn_serial) && ots_reader_get_u16_le(b, &f->vendor) &&
        ots_reader_get_u32_le(b, &f->orig_serial) && ots_reader_get_u8(b, &f->timeout_mult) &&
        ots_reader_skip(b, 3) && ots_reader_get_u32_le(b, &f->ot_rpi);
    if (ok && large) {
        ok = ots_reader_get_u32_le(b, &f->ot_params);
    } else if (ok) {
        ok = ots_reader_get_u16_le(b, &p16);
        f->ot_params = p16;
    }
    ok = ok && ots_reader_get_u32_le(b, &f->to_rpi);
    if (ok && large) {
        ok = ots_reader_get_u32_le(b, &f->to_params);
    } else if (ok) {
        ok = ots_reader_get_u16_le(b, &p16);
        f->to_params = p16;
    }
    ok = ok && ots_reader_get_u8(b, &f->transport);
    if (!ok) {
        bad(c, "bad_cip", "truncated forward open request");
        return;
    }
    f->large = large;
    f->has_request = TRUE;
    m->has_forward_open = TRUE;
}

static void
parse_forward_close(const Ctx *c, OtsReader *b, CipMessage *m)
{
    CipForward *f = &m->fwd;
    if (!ots_reader_get_u8(b, &f->priority_tick) || !ots_reader_get_u8(b, &f->timeout_ticks) ||
        !ots_reader_get_u16_le(b, &f->conn_serial) || !ots_reader_get_u16_le(b, &f->vendor) ||
        !ots_reader_get_u32_le(b, &f->orig_serial)) {
        bad(c, "bad_cip", "truncated forward close request");
        return;
    }
    f->has_request = TRUE;
    m->has_forward_close = TRUE;
}

/* Multiple Service Packet body: count, offsets (from the count), services. */
static void
parse_msp_request(const Ctx *c, OtsReader *body, CipMessage *m)
{
    guint16 count;
    OtsReader all = *body;
    if (!ots_reader_get_u16_le(body, &count)) {
        bad(c, "bad_cip", "multiple service packet without a service count");
        return;
    }
    m->n_services_total = count;
    for (guint i = 0; i < count; i++) {
        guint16 off, next;
        OtsReader one;
        if (!ots_reader_peek_u16_le(body, 2 * (gsize)i, &off)) {
            bad(c, "bad_cip", "multiple service packet: offset list truncated");
            return;
        }
        if (i + 1 < count) {
            if (!ots_reader_peek_u16_le(body, 2 * ((gsize)i + 1), &next)) {
                bad(c, "bad_cip", "multiple service packet: offset list truncated");
                return;
            }
        } else {
            next = (guint16)MIN(all.len, G_MAXUINT16);
        }
        OtsReader at = all;
        if (off < 2 + 2 * (gsize)count || next < off || !ots_reader_skip(&at, off) ||
            !ots_reader_get_sub_reader(&at, &one, next - off)) {
            bad(c, "bad_cip", "multiple service packet: service %u offset %u out of range", i, off);
            return;
        }
        if (i >= CIP_MAX_SERVICES)
            continue;
        CipService *sv = &m->services[m->n_services++];
        OtsReader sb;
        if (parse_request_header(c, &one, sv, &sb) &&
            (sv->service == SVC_GET_ATTRIBUTE_LIST || sv->service == SVC_SET_ATTRIBUTE_LIST))
            parse_attribute_list(&sb, sv);
    }
}

static void
parse_message_request(const Ctx *c, OtsReader *r, CipMessage *m, gboolean unwrap)
{
    OtsReader body;
    if (!parse_request_header(c, r, &m->top, &body))
        return;
    CipService *t = &m->top;
    gboolean cm = (t->flags & CIP_HAS_CLASS) && t->class_id == CLASS_CONNECTION_MANAGER;
    if (cm && t->service == SVC_UNCONNECTED_SEND && unwrap) {
        guint16 size;
        guint8 route_words, reserved;
        OtsReader inner, route;
        if (!ots_reader_get_u8(&body, &m->ucs_priority_tick) ||
            !ots_reader_get_u8(&body, &m->ucs_timeout_ticks) ||
            !ots_reader_get_u16_le(&body, &size) ||
            !ots_reader_get_sub_reader(&body, &inner, size) || !ots_reader_skip(&body, size & 1u) ||
            !ots_reader_get_u8(&body, &route_words) || !ots_reader_get_u8(&body, &reserved) ||
            !ots_reader_get_sub_reader(&body, &route, 2 * (gsize)route_words)) {
            bad(c, "bad_cip", "truncated unconnected send request");
            return;
        }
        m->unconnected_send = TRUE;
        m->route_len = (guint8)MIN(route.len, CIP_ROUTE_MAX);
        ots_reader_copy(&route, m->route, m->route_len);
        parse_message_request(c, &inner, m, FALSE);
        return;
    }
    if (t->service == SVC_MULTIPLE_SERVICE_PACKET)
        parse_msp_request(c, &body, m);
    else if (t->service == SVC_GET_ATTRIBUTE_LIST || t->service == SVC_SET_ATTRIBUTE_LIST)
        parse_attribute_list(&body, t);
    else if (cm && (t->service == SVC_FORWARD_OPEN || t->service == SVC_LARGE_FORWARD_OPEN))
        parse_forward_open(c, &body, m, t->service == SVC_LARGE_FORWARD_OPEN);
    else if (cm && t->service == SVC_FORWARD_CLOSE)
        parse_forward_close(c, &body, m);
}

void
cip_parse_request(OtsReader *r, CipMessage *m, CipRaiseFunc raise, gpointer user)
{
    Ctx c = {raise, user};
    memset(m, 0, sizeof(*m));
    parse_message_request(&c, r, m, TRUE);
}

/* ---- replies ---------------------------------------------------------------- */

/* Service, reserved, general status, extended status; @body gets the rest. */
static gboolean
parse_reply_header(const Ctx *c, OtsReader *r, CipService *sv, guint8 *raw, OtsReader *body)
{
    guint8 svc, reserved, words;
    if (!ots_reader_get_u8(r, &svc) || !ots_reader_get_u8(r, &reserved) ||
        !ots_reader_get_u8(r, &sv->status) || !ots_reader_get_u8(r, &words)) {
        bad(c, "bad_cip", "CIP reply shorter than 4 bytes");
        return FALSE;
    }
    *raw = svc;
    sv->service = svc & 0x7f;
    sv->flags |= CIP_HAS_STATUS;
    if (!(svc & CIP_REPLY_BIT))
        bad(c, "bad_cip", "reply without the reply bit (service 0x%02x)", svc);
    sv->ext_total = words;
    for (guint i = 0; i < words; i++) {
        guint16 w;
        if (!ots_reader_get_u16_le(r, &w)) {
            bad(c, "bad_cip", "extended status runs past the reply");
            return FALSE;
        }
        if (sv->n_ext < CIP_MAX_EXT_STATUS)
            sv->ext[sv->n_ext++] = w;
    }
    if (sv->status >= G_N_ELEMENTS(general_status_names))
        bad(c, "bad_status", "CIP general status 0x%02x", sv->status);
    ots_reader_get_sub_reader(r, body, ots_reader_remaining(r));
    return TRUE;
}

/* Copies the request entry's path into a reply entry. */
static void
take_path(CipService *rsp, const CipService *req)
{
    rsp->flags |= req->flags & (guint8)~CIP_HAS_STATUS;
    rsp->class_id = req->class_id;
    rsp->instance = req->instance;
    rsp->attribute = req->attribute;
    rsp->member = req->member;
    rsp->conn_point = req->conn_point;
    memcpy(rsp->symbol, req->symbol, sizeof(rsp->symbol));
    rsp->n_attrs = req->n_attrs;
    rsp->attr_count = req->attr_count;
    memcpy(rsp->attrs, req->attrs, sizeof(rsp->attrs));
}

static void
parse_msp_reply(const Ctx *c, OtsReader *body, CipMessage *m, const CipMessage *req)
{
    guint16 count;
    OtsReader all = *body;
    if (ots_reader_remaining(body) == 0)
        return; /* an error reply may carry no list */
    if (!ots_reader_get_u16_le(body, &count)) {
        bad(c, "bad_cip", "multiple service reply without a service count");
        return;
    }
    m->n_services_total = count;
    if (req && req->n_services_total != count)
        bad(c, "service_mismatch", "multiple service reply with %u services for %u requests", count,
            req->n_services_total);
    for (guint i = 0; i < count; i++) {
        guint16 off, next;
        OtsReader one, sb;
        if (!ots_reader_peek_u16_le(body, 2 * (gsize)i, &off)) {
            bad(c, "bad_cip", "multiple service reply: offset list truncated");
            return;
        }
        if (i + 1 < count) {
            if (!ots_reader_peek_u16_le(body, 2 * ((gsize)i + 1), &next)) {
                bad(c, "bad_cip", "multiple service reply: offset list truncated");
                return;
            }
        } else {
            next = (guint16)MIN(all.len, G_MAXUINT16);
        }
        OtsReader at = all;
        if (off < 2 + 2 * (gsize)count || next < off || !ots_reader_skip(&at, off) ||
            !ots_reader_get_sub_reader(&at, &one, next - off)) {
            bad(c, "bad_cip", "multiple service reply: service %u offset %u out of range", i, off);
            return;
        }
        if (i >= CIP_MAX_SERVICES)
            continue;
        CipService *sv = &m->services[m->n_services++];
        guint8 raw;
        memset(sv, 0, sizeof(*sv));
        if (!parse_reply_header(c, &one, sv, &raw, &sb))
            continue;
        if (req && i < req->n_services) {
            if (req->services[i].service != sv->service)
                bad(c, "service_mismatch", "embedded reply 0x%02x to request 0x%02x", raw,
                    req->services[i].service);
            else
                take_path(sv, &req->services[i]);
        }
    }
}

static void
parse_identity_attributes(OtsReader *b, CipMessage *m)
{
    CipIdentity *id = &m->identity;
    guint8 n;
    const guint8 *name;
    memset(id, 0, sizeof(*id));
    if (!ots_reader_get_u16_le(b, &id->vendor) || !ots_reader_get_u16_le(b, &id->device_type) ||
        !ots_reader_get_u16_le(b, &id->product_code) || !ots_reader_get_u8(b, &id->rev_major) ||
        !ots_reader_get_u8(b, &id->rev_minor) || !ots_reader_get_u16_le(b, &id->status) ||
        !ots_reader_get_u32_le(b, &id->serial) || !ots_reader_get_u8(b, &n) ||
        !ots_reader_get_data(b, n, &name))
        return;
    gsize k = MIN((gsize)n, sizeof(id->name) - 1);
    for (gsize i = 0; i < k; i++)
        id->name[i] = name[i] ? (char)name[i] : ' ';
    id->name[k] = '\0';
    m->has_identity = TRUE;
}

void
cip_parse_response(OtsReader *r, CipMessage *m, const CipMessage *req, CipRaiseFunc raise,
                   gpointer user)
{
    Ctx c = {raise, user};
    OtsReader body;
    memset(m, 0, sizeof(*m));
    m->is_reply = TRUE;
    if (!parse_reply_header(&c, r, &m->top, &m->reply_service, &body))
        return;
    CipService *t = &m->top;
    if (!req)
        return;
    m->unconnected_send = req->unconnected_send;
    /* A routing error of an Unconnected Send comes from the connection
     * manager with service 0x52; success comes from the target. */
    if (req->unconnected_send && t->service == SVC_UNCONNECTED_SEND &&
        req->top.service != SVC_UNCONNECTED_SEND)
        return;
    if (t->service != req->top.service) {
        bad(&c, "service_mismatch", "reply 0x%02x to request 0x%02x", m->reply_service,
            req->top.service);
        return;
    }
    take_path(t, &req->top);
    gboolean cm = (t->flags & CIP_HAS_CLASS) && t->class_id == CLASS_CONNECTION_MANAGER;
    if (t->service == SVC_MULTIPLE_SERVICE_PACKET) {
        parse_msp_reply(&c, &body, m, req);
    } else if (cm && status_is_error(t->status) == FALSE &&
               (t->service == SVC_FORWARD_OPEN || t->service == SVC_LARGE_FORWARD_OPEN)) {
        CipForward *f = &m->fwd;
        if (!ots_reader_get_u32_le(&body, &f->reply_ot_conn_id) ||
            !ots_reader_get_u32_le(&body, &f->reply_to_conn_id) ||
            !ots_reader_get_u16_le(&body, &f->conn_serial) ||
            !ots_reader_get_u16_le(&body, &f->vendor) ||
            !ots_reader_get_u32_le(&body, &f->orig_serial) ||
            !ots_reader_get_u32_le(&body, &f->ot_api) ||
            !ots_reader_get_u32_le(&body, &f->to_api)) {
            bad(&c, "bad_cip", "truncated forward open reply");
            return;
        }
        f->has_reply = TRUE;
        m->has_forward_open = TRUE;
    } else if (t->service == SVC_GET_ATTRIBUTES_ALL && !status_is_error(t->status) &&
               (t->flags & CIP_HAS_CLASS) && t->class_id == CLASS_IDENTITY) {
        parse_identity_attributes(&body, m);
    }
}

/* ---- summaries and events --------------------------------------------------- */

guint32
cip_function(const CipMessage *m)
{
    return m->top.service;
}

const char *
cip_function_name(const CipMessage *m)
{
    const char *name;
    OtsOpClass op;
    classify(&m->top, &name, &op);
    return name;
}

OtsOpClass
cip_op_class(const CipMessage *m)
{
    const char *name;
    OtsOpClass op;
    classify(&m->top, &name, &op);
    if (m->top.service == SVC_MULTIPLE_SERVICE_PACKET) {
        op = OTS_OP_OTHER;
        for (guint i = 0; i < m->n_services; i++) {
            OtsOpClass sub;
            classify(&m->services[i], &name, &sub);
            if (op_rank(sub) > op_rank(op))
                op = sub;
        }
    }
    return op;
}

gboolean
cip_is_error(const CipMessage *rsp)
{
    return status_is_error(rsp->top.status);
}

static void
emit_service(OtsEvent *e, const CipService *q, const CipService *r)
{
    /* Path from the request when seen, else what the reply inherited. */
    const CipService *p = q ? q : r;
    const char *name;
    OtsOpClass op;
    classify(p, &name, &op);
    ots_event_add_uint(e, "service", p->service);
    ots_event_add_string(e, "service_name", name);
    if (p->flags & CIP_HAS_CLASS)
        ots_event_add_uint(e, "class", p->class_id);
    if (p->flags & CIP_HAS_INSTANCE)
        ots_event_add_uint(e, "instance", p->instance);
    if (p->flags & CIP_HAS_ATTRIBUTE)
        ots_event_add_uint(e, "attribute", p->attribute);
    if (p->flags & CIP_HAS_MEMBER)
        ots_event_add_uint(e, "member", p->member);
    if (p->flags & CIP_HAS_CONN_POINT)
        ots_event_add_uint(e, "connection_point", p->conn_point);
    if (p->flags & CIP_HAS_SYMBOL)
        ots_event_add_string(e, "symbol", p->symbol);
    if (p->attr_count) {
        ots_event_begin_array(e, "attributes");
        for (guint i = 0; i < p->n_attrs; i++)
            ots_event_add_uint(e, NULL, p->attrs[i]);
        ots_event_end_array(e);
        if (p->attr_count > p->n_attrs)
            ots_event_add_uint(e, "attribute_count", p->attr_count);
    }
    if (r && (r->flags & CIP_HAS_STATUS)) {
        if (q && r->service != q->service)
            ots_event_add_uint(e, "response_service", r->service);
        ots_event_add_uint(e, "general_status", r->status);
        ots_event_add_string(e, "general_status_name", cip_general_status_name(r->status));
        if (r->ext_total) {
            ots_event_begin_array(e, "extended_status");
            for (guint i = 0; i < r->n_ext; i++)
                ots_event_add_uint(e, NULL, r->ext[i]);
            ots_event_end_array(e);
        }
    }
}

static void
emit_forward(OtsEvent *e, const CipForward *q, const CipForward *r)
{
    if (q && q->has_request) {
        ots_event_add_bool(e, "large", q->large);
        ots_event_add_uint(e, "ot_connection_id", q->ot_conn_id);
        ots_event_add_uint(e, "to_connection_id", q->to_conn_id);
        ots_event_add_uint(e, "connection_serial", q->conn_serial);
        ots_event_add_uint(e, "originator_vendor_id", q->vendor);
        ots_event_add_uint(e, "originator_serial", q->orig_serial);
        if (q->ot_rpi || q->to_rpi) {
            ots_event_add_uint(e, "timeout_multiplier", q->timeout_mult);
            ots_event_add_uint(e, "ot_rpi_us", q->ot_rpi);
            ots_event_add_uint(e, "to_rpi_us", q->to_rpi);
            ots_event_add_uint(e, "ot_parameters", q->ot_params);
            ots_event_add_uint(e, "to_parameters", q->to_params);
            ots_event_add_uint(e, "transport_trigger", q->transport);
        }
    }
    if (r && r->has_reply) {
        ots_event_add_uint(e, "response_ot_connection_id", r->reply_ot_conn_id);
        ots_event_add_uint(e, "response_to_connection_id", r->reply_to_conn_id);
        ots_event_add_uint(e, "ot_api_us", r->ot_api);
        ots_event_add_uint(e, "to_api_us", r->to_api);
    }
}

void
cip_emit(OtsEvent *e, const CipMessage *req, const CipMessage *rsp)
{
    ots_event_begin_object(e, "cip");
    emit_service(e, req ? &req->top : NULL, rsp ? &rsp->top : NULL);
    const CipMessage *any = req ? req : rsp;
    if (any->unconnected_send) {
        ots_event_begin_object(e, "unconnected_send");
        if (req) {
            ots_event_add_uint(e, "priority_time_tick", req->ucs_priority_tick);
            ots_event_add_uint(e, "timeout_ticks", req->ucs_timeout_ticks);
            ots_event_add_hex(e, "route_path", req->route, req->route_len);
        }
        if (rsp && rsp->top.service == SVC_UNCONNECTED_SEND)
            ots_event_add_bool(e, "routing_error", TRUE);
        ots_event_end_object(e);
    }
    guint n = MAX(req ? req->n_services : 0, rsp ? rsp->n_services : 0);
    if (any->top.service == SVC_MULTIPLE_SERVICE_PACKET) {
        ots_event_add_uint(e, "service_count", req ? req->n_services_total : rsp->n_services_total);
        ots_event_begin_array(e, "services");
        for (guint i = 0; i < n; i++) {
            ots_event_begin_object(e, NULL);
            emit_service(e, req && i < req->n_services ? &req->services[i] : NULL,
                         rsp && i < rsp->n_services ? &rsp->services[i] : NULL);
            ots_event_end_object(e);
        }
        ots_event_end_array(e);
    }
    if ((req && (req->has_forward_open || req->has_forward_close)) ||
        (rsp && rsp->has_forward_open)) {
        gboolean close = req ? req->has_forward_close : FALSE;
        ots_event_begin_object(e, close ? "forward_close" : "forward_open");
        emit_forward(e, req ? &req->fwd : NULL, rsp ? &rsp->fwd : NULL);
        ots_event_end_object(e);
    }
    ots_event_end_object(e);
}
