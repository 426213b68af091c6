/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for core/decode: every input is decoded as each supported
 * link type. Besides the sanitizers' checks, it traps when a result breaks the
 * decoder's contract (payload outside the input, counters that disagree). */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/decode/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int link_types[] = {
    1,   /* DLT_EN10MB */
    113, /* DLT_LINUX_SLL */
    276, /* DLT_LINUX_SLL2 */
    12,  /* DLT_RAW (Linux) */
    14,  /* DLT_RAW (BSD/OS) */
    101, /* LINKTYPE_RAW */
    228, /* DLT_IPV4 */
    229, /* DLT_IPV6 */
    0,   /* DLT_NULL */
    108, /* DLT_LOOP */
};

static void
check(const OtsPacket *pkt, OtsDecodeResult res, const OtsDecodeStats *s, const uint8_t *data,
      size_t size)
{
    guint64 sum = 0;

    for (int i = 0; i < OTS_MALFORMED_N_REASONS; i++)
        sum += s->malformed_by_reason[i];
    if (sum != s->malformed || s->packets != 1 ||
        s->tcp + s->udp + s->not_ip + s->other_l4 + s->fragments + s->malformed +
                s->unsupported_link !=
            1)
        abort();
    if (res == OTS_DECODE_UNSUPPORTED_LINK)
        abort(); /* every link type above is supported */
    if (res != OTS_DECODE_OK)
        return;
    if (pkt->l4_proto != 6 && pkt->l4_proto != 17)
        abort();
    if (pkt->ip_version != 4 && pkt->ip_version != 6)
        abort();
    if (pkt->vlan_depth > 2 || pkt->cap_len != size)
        abort();
    /* The payload is a slice of the input (pointer compared as integers so
     * that an empty payload at the very end is fine too). */
    uintptr_t start = (uintptr_t)data, end = start + size;
    uintptr_t p = (uintptr_t)pkt->payload;
    if (pkt->payload == NULL || p < start || p > end || pkt->payload_len > end - p)
        abort();
    /* Touch every payload byte so that ASan sees any overread. */
    volatile uint8_t sink = 0;
    for (guint32 i = 0; i < pkt->payload_len; i++)
        sink ^= pkt->payload[i];
    (void)sink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > G_MAXUINT32)
        return 0;
    for (size_t i = 0; i < G_N_ELEMENTS(link_types); i++) {
        OtsDecodeStats stats = {0};
        OtsPacket pkt;
        OtsDecodeResult res = ots_decode_packet(link_types[i], size ? data : NULL, (guint32)size,
                                                (guint32)size, 0, &pkt, &stats);
        if (!ots_decode_link_supported(link_types[i]))
            abort();
        check(&pkt, res, &stats, data, size);
    }
    return 0;
}
