/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the control socket's request parser: the input is
 * what any local process allowed to connect could send, cut into lines as
 * the server does. Every refusal becomes an error reply, which must itself
 * be valid JSON (the message may quote parts of the request). */

#include <stdint.h>
#include <string.h>

#include "core/control/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_reply(char *line)
{
    g_autoptr(JsonParser) p = json_parser_new();
    gsize len = strlen(line);
    if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) ||
        !json_parser_load_from_data(p, line, (gssize)len - 1, NULL))
        __builtin_trap();
    g_free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    gsize start = 0;
    while (start <= size) {
        const char *nl = memchr(text + start, '\n', size - start);
        gsize len = nl ? (gsize)(nl - (text + start)) : size - start;
        g_autoptr(GError) err = NULL;
        g_autoptr(OtsControlRequest) req = ots_control_request_parse(text + start, len, &err);
        if (req) {
            /* A valid request names a known command, and a name only when allowed. */
            if (ots_control_cmd_from_string(ots_control_cmd_to_string(req->cmd)) != (int)req->cmd)
                __builtin_trap();
            if (req->name && req->cmd != OTS_CONTROL_CMD_TRANSPORT_SHOW &&
                req->cmd != OTS_CONTROL_CMD_TRANSPORT_SET &&
                req->cmd != OTS_CONTROL_CMD_TRANSPORT_TEST)
                __builtin_trap();
            JsonNode *n = json_node_new(JSON_NODE_VALUE);
            json_node_set_string(n, req->name ? req->name : "");
            check_reply(ots_control_reply_ok(n));
        } else {
            if (!err || err->domain != OTS_CONTROL_ERROR)
                __builtin_trap();
            check_reply(ots_control_reply_error(err->message));
        }
        if (!nl)
            break;
        start += len + 1;
    }
    return 0;
}
