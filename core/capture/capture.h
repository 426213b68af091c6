/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Opening capture handles: offline files (pcap and pcapng) and live
 * interfaces. Live handles are opened by the main thread before the workers
 * start, so the daemon can drop privileges after opening them. */

#include <glib.h>
#include <pcap/pcap.h>

G_BEGIN_DECLS

#define OTS_CAPTURE_ERROR (ots_capture_error_quark())
GQuark ots_capture_error_quark(void);

typedef enum {
    OTS_CAPTURE_ERROR_OPEN,
    OTS_CAPTURE_ERROR_LINKTYPE,
    OTS_CAPTURE_ERROR_FILTER,
} OtsCaptureError;

typedef struct {
    const char *interface;
    const char *filter; /* nullable */
    int snaplen;
    gboolean promiscuous;
    int buffer_size_mb;
    int timeout_ms;     /* how often the worker wakes up with no traffic */
} OtsLiveOptions;

/* (transfer full) */
pcap_t *ots_capture_open_live(const OtsLiveOptions *opts, GError **error);
/* Opens a file with microsecond timestamps and checks its link type. */
pcap_t *ots_capture_open_file(const char *path, GError **error);

G_END_DECLS
