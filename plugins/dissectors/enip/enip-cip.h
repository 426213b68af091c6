/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* CIP message layer of the EtherNet/IP dissector: requests and replies as
 * carried in a CPF data item, summarised into fixed-size structs so that a
 * pending request never keeps packet bytes. Private to the plugin. */

#include <otsensor/dissector.h>

#define CIP_MAX_SERVICES 32  /* Multiple Service Packet entries kept in detail */
#define CIP_SYMBOL_MAX 64    /* dotted symbolic path (tag name), truncated */
#define CIP_MAX_ATTR_LIST 8  /* Get_Attribute_List ids kept */
#define CIP_MAX_EXT_STATUS 4 /* extended status words kept */
#define CIP_ROUTE_MAX 16     /* Unconnected Send route path bytes kept */

enum {
    CIP_HAS_CLASS = 1 << 0,
    CIP_HAS_INSTANCE = 1 << 1,
    CIP_HAS_ATTRIBUTE = 1 << 2,
    CIP_HAS_MEMBER = 1 << 3,
    CIP_HAS_CONN_POINT = 1 << 4,
    CIP_HAS_SYMBOL = 1 << 5,
    CIP_HAS_STATUS = 1 << 6, /* a reply was parsed into this entry */
};

/* One service: request path and, once paired, the reply's status. */
typedef struct {
    guint8 service; /* without the reply bit */
    guint8 flags;   /* CIP_HAS_* */
    guint8 status;  /* general status */
    guint8 n_ext;
    guint16 ext[CIP_MAX_EXT_STATUS];
    guint8 ext_total;
    guint8 n_attrs;
    guint16 attr_count;
    guint16 attrs[CIP_MAX_ATTR_LIST];
    guint32 class_id, instance, attribute, member, conn_point;
    char symbol[CIP_SYMBOL_MAX];
} CipService;

typedef struct {
    guint16 vendor;
    guint16 device_type;
    guint16 product_code;
    guint8 rev_major, rev_minor;
    guint16 status;
    guint32 serial;
    guint8 state;
    gboolean has_state;
    guint32 sock_addr;
    guint16 sock_port;
    char name[33];
} CipIdentity;

typedef struct {
    gboolean large;
    gboolean has_request, has_reply;
    guint8 priority_tick, timeout_ticks;
    guint32 ot_conn_id, to_conn_id;
    guint16 conn_serial, vendor;
    guint32 orig_serial;
    guint8 timeout_mult;
    guint32 ot_rpi, to_rpi;
    guint32 ot_params, to_params;
    guint8 transport;
    guint32 reply_ot_conn_id, reply_to_conn_id;
    guint32 ot_api, to_api;
} CipForward;

typedef struct {
    CipService top; /* the message (for Unconnected Send: the unwrapped one) */
    gboolean is_reply;
    guint8 reply_service; /* reply service byte as sent, reply bit included */
    /* Unconnected Send wrapper (class 6 service 0x52) */
    gboolean unconnected_send;
    guint8 ucs_priority_tick, ucs_timeout_ticks;
    guint8 route_len;
    guint8 route[CIP_ROUTE_MAX];
    /* Forward Open / Large Forward Open / Forward Close */
    gboolean has_forward_open, has_forward_close;
    CipForward fwd;
    /* Identity object attributes from Get_Attributes_All on class 1 */
    gboolean has_identity;
    CipIdentity identity;
    /* Multiple Service Packet. services[] stays last: a pending request is
     * kept with only its first n_services entries allocated, so nothing may
     * read an entry at or past n_services. */
    guint16 n_services_total;
    guint8 n_services;
    CipService services[CIP_MAX_SERVICES];
} CipMessage;

/* Raises anomaly @code with @msg in the caller's context. */
typedef void (*CipRaiseFunc)(gpointer user, const char *code, const char *msg);

void cip_parse_request(OtsReader *r, CipMessage *m, CipRaiseFunc raise, gpointer user);
/* @req (nullable): the paired request, whose paths the reply entries take. */
void cip_parse_response(OtsReader *r, CipMessage *m, const CipMessage *req, CipRaiseFunc raise,
                        gpointer user);

guint32 cip_function(const CipMessage *m);
const char *cip_function_name(const CipMessage *m);
OtsOpClass cip_op_class(const CipMessage *m);
/* Does this reply (or one of its embedded replies) report an error? */
gboolean cip_is_error(const CipMessage *rsp);
/* Writes the "cip" object from the request and/or reply (both nullable). */
void cip_emit(OtsEvent *e, const CipMessage *req, const CipMessage *rsp);

const char *cip_vendor_name(guint16 vendor);
const char *cip_device_type_name(guint16 type);
const char *cip_general_status_name(guint8 status);
