/* SPDX-License-Identifier: Apache-2.0 */
#include "core/capture/capture.h"
#include "core/decode/decode.h"

#include <errno.h>
#include <stdio.h>
#include <stdio_ext.h>

G_DEFINE_QUARK(ots-capture-error-quark, ots_capture_error)

static gboolean
check_link(pcap_t *p, const char *what, GError **error)
{
    int dlt = pcap_datalink(p);
    if (!ots_decode_link_supported(dlt)) {
        const char *name = pcap_datalink_val_to_name(dlt);
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_LINKTYPE,
                    "%s: unsupported link type %s (%d); supported: Ethernet, Linux cooked v1/v2, "
                    "raw IP, BSD loopback",
                    what, name ? name : "?", dlt);
        return FALSE;
    }
    return TRUE;
}

pcap_t *
ots_capture_open_file(const char *path, GError **error)
{
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    /* Our own FILE, for its buffer: libpcap reads each record with two
     * fread()s, and the default 4 KiB stdio buffer would make that a read()
     * per few packets. pcap_close() closes the file. */
    FILE *fp = g_str_equal(path, "-") ? stdin : fopen(path, "rbe");
    if (!fp) {
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN, "%s: %s", path,
                    g_strerror(errno));
        return NULL;
    }
    setvbuf(fp, NULL, _IOFBF, 1024 * 1024);
    /* Only the source's reader thread touches this FILE: no stdio lock
     * around each of those fread()s. */
    __fsetlocking(fp, FSETLOCKING_BYCALLER);
    pcap_t *p = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_MICRO, errbuf);
    if (!p) {
        if (fp != stdin)
            fclose(fp);
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN, "%s: %s", path, errbuf);
        return NULL;
    }
    if (!check_link(p, path, error)) {
        pcap_close(p);
        return NULL;
    }
    return p;
}

pcap_t *
ots_capture_open_live(const OtsLiveOptions *o, GError **error)
{
    char errbuf[PCAP_ERRBUF_SIZE] = "";
    pcap_t *p = pcap_create(o->interface, errbuf);
    if (!p) {
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN, "interface %s: %s",
                    o->interface, errbuf);
        return NULL;
    }
    pcap_set_snaplen(p, o->snaplen);
    pcap_set_promisc(p, o->promiscuous);
    pcap_set_timeout(p, o->timeout_ms > 0 ? o->timeout_ms : 100);
    if (o->buffer_size_mb > 0)
        pcap_set_buffer_size(p, o->buffer_size_mb * 1024 * 1024);
    int rc = pcap_activate(p);
    if (rc < 0) {
        g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_OPEN, "interface %s: %s%s",
                    o->interface, pcap_statustostr(rc),
                    rc == PCAP_ERROR_PERM_DENIED ? " (needs CAP_NET_RAW and CAP_NET_ADMIN)" : "");
        if (rc == PCAP_ERROR && *pcap_geterr(p))
            g_prefix_error(error, "%s: ", pcap_geterr(p));
        pcap_close(p);
        return NULL;
    }
    if (rc > 0)
        g_message("interface %s: %s", o->interface, pcap_statustostr(rc));
    if (!check_link(p, o->interface, error)) {
        pcap_close(p);
        return NULL;
    }
    if (o->filter && *o->filter) {
        struct bpf_program prog;
        if (pcap_compile(p, &prog, o->filter, 1, PCAP_NETMASK_UNKNOWN) < 0 ||
            pcap_setfilter(p, &prog) < 0) {
            g_set_error(error, OTS_CAPTURE_ERROR, OTS_CAPTURE_ERROR_FILTER,
                        "interface %s: filter \"%s\": %s", o->interface, o->filter,
                        pcap_geterr(p));
            pcap_close(p);
            return NULL;
        }
        pcap_freecode(&prog);
    }
    return p;
}
