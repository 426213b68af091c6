/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The control protocol's wire format, apart from any socket so it can be
 * fuzzed: one JSON object a line each way.
 *   request  {"v":1,"cmd":"status"}   {"v":1,"cmd":"transport.show","name":"proxy"}
 *           {"v":1,"cmd":"transport.set","name":"proxy","persist":true}
 *           {"v":1,"cmd":"transport.set","clear":true}   {"v":1,"cmd":"transport.test"}
 *           {"v":1,"cmd":"reload"}   (answered once a switch it sets off is done)
 *   reply    {"v":1,"ok":true,"result":{...}}   {"v":1,"ok":false,"error":"..."} */

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define OTS_CONTROL_PROTOCOL_VERSION 1
/* Longest request line accepted, newline excluded. */
#define OTS_CONTROL_MAX_REQUEST (64 * 1024)

#define OTS_CONTROL_ERROR (ots_control_error_quark())
GQuark ots_control_error_quark(void);

typedef enum {
    OTS_CONTROL_ERROR_MALFORMED,   /* not a JSON object, bad member types */
    OTS_CONTROL_ERROR_VERSION,     /* missing or unsupported "v" */
    OTS_CONTROL_ERROR_UNKNOWN_CMD, /* "cmd" names no command */
    OTS_CONTROL_ERROR_TOO_LONG,    /* longer than OTS_CONTROL_MAX_REQUEST */
    OTS_CONTROL_ERROR_DENIED,      /* peer credentials refused */
    OTS_CONTROL_ERROR_BUSY,        /* too many clients */
    OTS_CONTROL_ERROR_FAILED,      /* the command ran and failed */
    OTS_CONTROL_ERROR_NOT_FOUND,   /* transport.show of an unknown name */
} OtsControlError;

typedef enum {
    OTS_CONTROL_CMD_STATUS,
    OTS_CONTROL_CMD_STATS,
    OTS_CONTROL_CMD_VERSION,
    OTS_CONTROL_CMD_TRANSPORT_LIST,
    OTS_CONTROL_CMD_TRANSPORT_SHOW,
    OTS_CONTROL_CMD_RELOAD,
    OTS_CONTROL_CMD_TRANSPORT_SET,  /* "transport.set": switch (make before break) */
    OTS_CONTROL_CMD_TRANSPORT_TEST, /* "transport.test": walk a transport's hops */
} OtsControlCmd;

/**
 * OtsControlRequest:
 * @cmd: the command
 * @name: (nullable): the transport name of transport.show, transport.test
 *   (optional) and transport.set (required)
 * @persist: transport.set: keep the choice across restarts
 * @clear: transport.set without a name: forget the persisted choice
 */
typedef struct {
    OtsControlCmd cmd;
    char *name;
    gboolean persist;
    gboolean clear;
} OtsControlRequest;

void ots_control_request_free(OtsControlRequest *req);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(OtsControlRequest, ots_control_request_free)

/* Parses one request line (without its newline; need not be NUL-terminated).
 * Returns NULL with @error (OTS_CONTROL_ERROR) on anything but a valid request. */
OtsControlRequest *ots_control_request_parse(const char *data, gsize len, GError **error);

/* The wire name of @cmd ("transport.show"), and back (-1: unknown). */
const char *ots_control_cmd_to_string(OtsControlCmd cmd);
int ots_control_cmd_from_string(const char *name);

/* Reply lines, newline included. @result is consumed (may be NULL: null). */
char *ots_control_reply_ok(JsonNode *result);
char *ots_control_reply_error(const char *message);

G_END_DECLS
