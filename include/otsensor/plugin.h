/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/**
 * SECTION:plugin
 * @title: Plugin descriptor and ABI
 *
 * Every otsensor plugin is a shared object that exports exactly one symbol,
 * ots_plugin_get_info(), returning a const descriptor. Every descriptor
 * starts with the fields of #OtsPluginHeader, so the loader can check the ABI
 * before it reads anything else.
 *
 * ABI rules (GStreamer's): the major must equal the host's; the minor may be
 * at most the host's. New fields are only ever added in the reserved slots
 * at the end of a descriptor, so a plugin built against an older minor has
 * NULL there and keeps loading.
 */

#include <glib.h>

G_BEGIN_DECLS

#define OTS_ABI_MAJOR 1
/* 1.1: OtsTransportInfo.status and .set_reconnect_func
 * 1.2: ots_session_charge() / ots_session_refund() (the memory budget),
 *      ots_session_begin_anomalyf() / ots_session_begin_anomalyv()
 * 1.3: the event builder's inline fast path (OtsEventHead_ is the head of
 *      the core's event; ots_event_put_string_())
 * 1.4: OtsEventMemo, ots_event_memo_put/begin/end() */
#define OTS_ABI_MINOR 4

/* Kept for the names STYLE.md uses; the whole SDK shares one ABI version. */
#define OTS_DISSECTOR_ABI_MAJOR OTS_ABI_MAJOR
#define OTS_DISSECTOR_ABI_MINOR OTS_ABI_MINOR
#define OTS_TRANSPORT_ABI_MAJOR OTS_ABI_MAJOR
#define OTS_TRANSPORT_ABI_MINOR OTS_ABI_MINOR

/* The one exported entry point of every plugin. */
#define OTS_PLUGIN_ENTRY_SYMBOL "ots_plugin_get_info"

typedef enum {
    OTS_PLUGIN_KIND_DISSECTOR = 1,
    OTS_PLUGIN_KIND_TRANSPORT = 2,
} OtsPluginKind;

/**
 * OtsPluginHeader:
 * @abi_major: must be %OTS_ABI_MAJOR of the SDK the plugin was built with
 * @abi_minor: %OTS_ABI_MINOR of that SDK
 * @kind: an #OtsPluginKind
 * @name: unique plugin name, lower case (`modbus`, `direct`)
 * @version: the plugin's own version string
 *
 * The common initial sequence of #OtsDissectorInfo and #OtsTransportInfo.
 */
typedef struct {
    guint32 abi_major;
    guint32 abi_minor;
    guint32 kind;
    const char *name;
    const char *version;
} OtsPluginHeader;

typedef const OtsPluginHeader *(*OtsPluginGetInfoFunc)(void);

G_END_DECLS
