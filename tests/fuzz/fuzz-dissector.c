/* SPDX-License-Identifier: Apache-2.0 */

/* One libFuzzer driver for every dissector, as Wireshark's fuzzshark: the
 * plugin's source is compiled into the binary (fuzz-dissector-<proto>), and
 * the input is replayed through the dissector harness exactly as the
 * pipeline would feed a flow. Besides the sanitizers, it aborts when the
 * dissector emits an event that is not valid JSON with its envelope, or
 * logs a warning or critical (a misuse of the SDK).
 *
 * Input format, a sequence of chunks, each introduced by one byte h:
 *   bit 7         direction (0: to server, 1: to client)
 *   h & 0x7f
 *     0x7f        a gap in that direction; the next byte is the lost length
 *     0x7e        a long chunk; the next two bytes (big endian) are its length
 *     else        a chunk of that many bytes (0..125)
 * Each chunk advances the packet time by (h & 7) seconds, so timeouts fire.
 * TCP dissectors get each chunk appended to the direction's stream, UDP
 * dissectors get each chunk as one datagram. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <otsensor/dissector.h>
#include "core/dissect/harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

const OtsPluginHeader *ots_plugin_get_info(void);

#define CHUNK_GAP 0x7f
#define CHUNK_LONG 0x7e
#define START_TIME ((gint64)1700000000 * G_USEC_PER_SEC)

static const OtsDissectorInfo *dissector;
static OtsL4Proto l4;
static guint16 port;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const OtsPluginHeader *h = ots_plugin_get_info();
    if (!h || h->kind != OTS_PLUGIN_KIND_DISSECTOR || h->abi_major != OTS_ABI_MAJOR)
        abort();
    dissector = (const OtsDissectorInfo *)h;
    if (dissector->tcp_ports && dissector->tcp_ports[0]) {
        l4 = OTS_L4_TCP;
        port = dissector->tcp_ports[0];
    } else if (dissector->udp_ports && dissector->udp_ports[0]) {
        l4 = OTS_L4_UDP;
        port = dissector->udp_ports[0];
    } else {
        /* Heuristic-only dissectors: any port. */
        l4 = OTS_L4_TCP;
        port = 1;
    }
    /* A warning or critical from a dissector is a bug: make it a crash. */
    g_log_set_always_fatal(G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    OtsHarness *h = ots_harness_new(dissector, l4, port);
    gint64 now = START_TIME;
    size_t i = 0;

    ots_harness_set_time(h, now);
    while (i < size) {
        uint8_t head = data[i++];
        OtsDirection dir = (head & 0x80) ? OTS_DIR_TO_CLIENT : OTS_DIR_TO_SERVER;
        size_t len = head & 0x7f;

        now += (gint64)(head & 7) * G_USEC_PER_SEC;
        ots_harness_set_time(h, now);
        if (len == CHUNK_GAP) {
            guint32 lost = i < size ? data[i++] : 0;
            ots_harness_gap(h, dir, lost);
            continue;
        }
        if (len == CHUNK_LONG) {
            if (size - i < 2)
                break;
            len = ((size_t)data[i] << 8) | data[i + 1];
            i += 2;
        }
        len = MIN(len, size - i);
        if (len > 0)
            ots_harness_feed(h, dir, data + i, len);
        i += len;
    }
    ots_harness_end(h);

    if (ots_harness_invalid_events(h) != 0) {
        for (guint k = 0; k < ots_harness_n_events(h); k++)
            fprintf(stderr, "event %u: %s\n", k, ots_harness_event(h, k));
        abort();
    }
    ots_harness_free(h);
    return 0;
}
