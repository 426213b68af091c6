/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Internal to the BACnet plugin: name tables (bacnet-names.c). Each returns
 * a static lower_snake_case name, or NULL when the value has none. */

#include <otsensor/dissector.h>
#include <string.h>

G_BEGIN_DECLS

const char *bacnet_bvlc_name(guint v);
const char *bacnet_apdu_type_name(guint v);
const char *bacnet_service_name(gboolean confirmed, guint v);
OtsOpClass bacnet_service_class(gboolean confirmed, guint v);
const char *bacnet_network_message_name(guint v);
const char *bacnet_object_type_name(guint v);
const char *bacnet_property_name(guint64 v);
const char *bacnet_error_class_name(guint64 v);
const char *bacnet_reject_reason_name(guint v);
const char *bacnet_abort_reason_name(guint v);
const char *bacnet_segmentation_name(guint64 v);
const char *bacnet_reinit_state_name(guint64 v);
const char *bacnet_dcc_name(guint64 v);

/* Shared by the parser (bacnet.c) and the service walker (bacnet-walk.c). */

#define MAX_ITEMS 32 /* list elements reported per event */
#define MAX_DEPTH 16 /* nesting of constructed values we follow */
#define MAX_PROBLEMS 4
#define OBJECT_DEVICE 8
#define PROP_VENDOR_IDENTIFIER 120

enum {
    SC_CONFIRMED_COV_NOTIFICATION = 1,
    SC_SUBSCRIBE_COV = 5,
    SC_ATOMIC_READ_FILE = 6,
    SC_ATOMIC_WRITE_FILE = 7,
    SC_READ_PROPERTY = 12,
    SC_READ_PROPERTY_MULTIPLE = 14,
    SC_WRITE_PROPERTY = 15,
    SC_WRITE_PROPERTY_MULTIPLE = 16,
    SC_DEVICE_COMMUNICATION_CONTROL = 17,
    SC_REINITIALIZE_DEVICE = 20,
};

enum {
    SU_I_AM = 0,
    SU_I_HAVE = 1,
    SU_UNCONFIRMED_COV_NOTIFICATION = 2,
    SU_UNCONFIRMED_EVENT_NOTIFICATION = 3,
    SU_TIME_SYNCHRONIZATION = 6,
    SU_WHO_HAS = 7,
    SU_WHO_IS = 8,
    SU_UTC_TIME_SYNCHRONIZATION = 9,
    SU_UNCONFIRMED_COV_NOTIFICATION_MULTIPLE = 11,
    SU_UNCONFIRMED_AUDIT_NOTIFICATION = 12,
};

/* Application tag numbers. */
enum {
    TAG_NULL = 0,
    TAG_BOOLEAN,
    TAG_UNSIGNED,
    TAG_SIGNED,
    TAG_REAL,
    TAG_DOUBLE,
    TAG_OCTET_STRING,
    TAG_CHARACTER_STRING,
    TAG_BIT_STRING,
    TAG_ENUMERATED,
    TAG_DATE,
    TAG_TIME,
    TAG_OBJECT_ID,
};

enum {
    FACT_NAME,
    FACT_VENDOR,
    FACT_MODEL,
    FACT_FIRMWARE,
    FACT_SOFTWARE,
    FACT_SERIAL,
    FACT_LOCATION,
    FACT_DESCRIPTION,
    N_FACTS
};

/* Device facts found in a response (strings borrowed from its bytes). */
typedef struct {
    gboolean device_object; /* the property being walked belongs to a device */
    guint32 instance;
    guint64 property;
    const guint8 *str[N_FACTS];
    gsize len[N_FACTS];
    gboolean have_vendor_id;
    guint64 vendor_id;
    gboolean any;   /* a fact was found */
    gboolean ready; /* str, len and the vendor id are set (facts_begin()) */
} Facts;

/* Zeroes the facts before the first one is noted: most answers have none,
 * and zeroing the struct for each was a `rep stos` costing ~1 % of the
 * benchmark's run time (perf). */
static inline void
facts_begin(Facts *f)
{
    if (f->ready)
        return;
    memset(f->str, 0, sizeof(f->str));
    memset(f->len, 0, sizeof(f->len));
    f->have_vendor_id = FALSE;
    f->vendor_id = 0;
    f->ready = TRUE;
}

typedef struct {
    const char *code;
    OtsDirection dir;
    char msg[128];
} Problem;

/* The object, property and array index a ReadProperty or WriteProperty
 * names. */
typedef struct {
    gboolean set;
    guint32 type, instance;
    guint64 property;
    gboolean has_index;
    guint64 index;
} Ident;

typedef struct {
    OtsEvent *e; /* NULL: count problems only (or muted past MAX_ITEMS) */
    OtsDirection dir;
    guint problems;
    guint n_raised;
    /* MAX_PROBLEMS entries, the caller's and left uninitialised: this
     * struct is set up per packet, and zeroing the messages was 40% of the
     * parser's own time (perf annotate: rep stos in bacnet_parse). */
    Problem *raised;
    Facts *facts;
    /* Request walk: where to keep the identifiers it names. Response walk:
     * the request's, which an answer naming the same is not to repeat (the
     * event carries them once, in the request). */
    Ident *ident;
    const Ident *echo;
} Walk;

typedef struct {
    guint32 instance;
    guint64 max_apdu, segmentation, vendor_id;
} IAm;

extern const char *const bacnet_fact_keys[N_FACTS];

void bacnet_problem(Walk *w, const char *code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Raises the collected problems as anomalies (no event may be open). */
void bacnet_raise_problems(OtsSession *s, Walk *w);
void bacnet_walk_confirmed_request(Walk *w, OtsReader *r, guint8 service);
void bacnet_walk_complex_ack(Walk *w, OtsReader *r, guint8 service);
/* @iam / @have_iam: the identity of an I-Am. */
void bacnet_walk_unconfirmed(Walk *w, OtsReader *r, guint8 service, IAm *iam, gboolean *have_iam);
void bacnet_walk_error(Walk *w, OtsReader *r);

G_END_DECLS
