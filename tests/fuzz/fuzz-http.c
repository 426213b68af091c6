/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the uplink's HTTP response parser: the input is what
 * a hostile endpoint (or a man in the middle past a broken TLS setup) could
 * send back. Its first byte picks the feeding chunk size, to exercise every
 * state split across reads; tight limits make the bounds reachable. The
 * Retry-After parser gets every header value too. */

#include <stdint.h>
#include <string.h>

#include "core/uplink/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const OtsHttpLimits tight = {128, 256, 8, 1024, 512, 2};

    if (size < 1)
        return 0;
    gsize step = (gsize)(data[0] % 64) + 1;
    const OtsHttpLimits *limits = (data[0] & 0x80) ? &tight : NULL;
    data++;
    size--;
    g_autoptr(OtsHttpParser) p = ots_http_parser_new(limits);
    gsize off = 0;
    for (guint round = 0; round < 3 && off <= size; round++) {
        OtsHttpParseResult r = OTS_HTTP_PARSE_NEED_MORE;
        while (off < size && r == OTS_HTTP_PARSE_NEED_MORE) {
            gsize used = 0;
            g_autoptr(GError) err = NULL;
            gsize n = MIN(step, size - off);
            r = ots_http_parser_feed(p, data + off, n, &used, &err);
            g_assert(used <= n);
            g_assert((r == OTS_HTTP_PARSE_ERROR) == (err != NULL));
            off += used;
            if (r == OTS_HTTP_PARSE_NEED_MORE && used == 0)
                g_assert_not_reached();
        }
        if (r == OTS_HTTP_PARSE_NEED_MORE) {
            g_autoptr(GError) err = NULL;
            r = ots_http_parser_feed_eof(p, &err);
        }
        if (r != OTS_HTTP_PARSE_DONE)
            break;
        guint status = ots_http_parser_get_status(p);
        g_assert(status >= 200 && status <= 599);
        gsize len;
        ots_http_parser_get_body(p, &len);
        g_assert(len <= (limits ? limits->max_body : 65536));
        const char *ra = ots_http_parser_get_header(p, "Retry-After");
        guint64 secs;
        if (ra && ots_http_parse_retry_after(ra, 1700000000, 3600, &secs))
            g_assert(secs <= 3600);
        (void)ots_http_parser_get_close(p);
        (void)ots_http_parser_get_reason(p);
        /* Keep-alive: the next response follows. */
        ots_http_parser_reset(p);
    }
    return 0;
}
