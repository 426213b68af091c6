/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the proxy transports' CONNECT reply parser: any
 * bytes, fed one at a time as the reader does. Checks the parser's promises:
 * it never asks for a byte past the head's end or past its bounds, DONE and
 * ERROR are final, a DONE head has a status line and an empty line. */
#include "../../plugins/transports/common/ots-transport-common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first input byte picks a prefix, so that the fuzzer spends its time
 * past the "HTTP/1." check too. */
static const char *const prefixes[] = {"", "HTTP/1.", "HTTP/1.1 200 OK\r\n", "HTTP/1.0 407 x\n"};

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t in_size)
{
    if (in_size == 0 || in_size > 65536)
        return 0;
    const char *prefix = prefixes[in[0] % 4];
    size_t plen = strlen(prefix);
    size_t size = plen + in_size - 1;
    uint8_t *data = malloc(size + 1);
    memcpy(data, prefix, plen);
    memcpy(data + plen, in + 1, in_size - 1);
    OtsConnectReply r;
    ots_connect_reply_init(&r);
    OtsConnectReplyState st = OTS_CONNECT_REPLY_MORE;
    size_t used = 0;
    while (used < size && st == OTS_CONNECT_REPLY_MORE)
        st = ots_connect_reply_feed(&r, data[used++]);
    if (r.total != used || used > OTS_CONNECT_REPLY_MAX_BYTES + 1)
        abort();
    if (st == OTS_CONNECT_REPLY_DONE) {
        if (r.status < 100 || r.status > 999 || used < 2 || data[used - 1] != '\n' ||
            r.lines > OTS_CONNECT_REPLY_MAX_LINES || r.error != OTS_CONNECT_REPLY_OK ||
            memcmp(data, "HTTP/1.", 7) != 0)
            abort();
    }
    if (st == OTS_CONNECT_REPLY_ERROR) {
        if (r.error == OTS_CONNECT_REPLY_OK)
            abort();
        char *msg = ots_connect_reply_describe_error(&r);
        if (!msg || !*msg)
            abort();
        free(msg);
    }
    /* Final states stay final. */
    if (st != OTS_CONNECT_REPLY_MORE && ots_connect_reply_feed(&r, 'x') != st)
        abort();
    if (strlen(r.reason) >= sizeof r.reason || strlen(r.first) >= sizeof r.first)
        abort();
    free(data);
    return 0;
}
