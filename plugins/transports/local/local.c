/* SPDX-License-Identifier: Apache-2.0 */
/* The `local` transport: NDJSON to a file or stdout, for air-gapped sites,
 * lab runs and `otsensord -r`. The core writes the lines itself (RAW). */
#include <otsensor/transport.h>

#include <errno.h>
#include <fcntl.h>
#include <gio/gunixoutputstream.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *path;
    gboolean append;
} Local;

static const OtsSettingSpec local_settings[] = {
    {.name = "path", .type = OTS_SETTING_STRING,
     .help = "file to append NDJSON to; \"-\" is standard output"},
    {.name = "append", .type = OTS_SETTING_BOOL,
     .help = "append to an existing file (true) or truncate it at start (false)"},
    {.name = NULL, .type = OTS_SETTING_END},
};

static gpointer
local_create(const OtsSettings *settings, GError **error)
{
    Local *l = g_new0(Local, 1);
    const char *path = "-";
    if (settings)
        ots_settings_get_string(settings, "path", &path);
    l->path = g_strdup(path);
    l->append = TRUE;
    if (settings)
        ots_settings_get_bool(settings, "append", &l->append);
    return l;
}

static void
local_destroy(gpointer self)
{
    Local *l = self;
    g_free(l->path);
    g_free(l);
}

static void
local_connect_async(gpointer self, const OtsEndpoint *endpoint, GCancellable *cancellable,
                    OtsHopReportFunc report, gpointer report_data, GAsyncReadyCallback callback,
                    gpointer user_data)
{
    Local *l = self;
    GTask *task = g_task_new(NULL, cancellable, callback, user_data);
    int fd;
    if (strcmp(l->path, "-") == 0) {
        fd = dup(STDOUT_FILENO);
    } else {
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (l->append ? O_APPEND : O_TRUNC);
        fd = open(l->path, flags, 0640);
    }
    if (fd < 0) {
        int e = errno;
        g_autofree char *msg = g_strdup_printf("cannot open %s: %s", l->path, g_strerror(e));
        if (report) {
            OtsHopReport r = {.hop = 0, .hop_name = l->path, .step = OTS_HOP_FAILED,
                              .detail = msg};
            report(&r, report_data);
        }
        g_task_return_new_error(task, G_IO_ERROR, g_io_error_from_errno(e), "%s", msg);
    } else {
        if (report) {
            OtsHopReport r = {.hop = 0, .hop_name = l->path, .step = OTS_HOP_INFO,
                              .detail = "opened"};
            report(&r, report_data);
        }
        GInputStream *in = g_memory_input_stream_new();
        GOutputStream *out = g_unix_output_stream_new(fd, TRUE);
        GIOStream *io = g_simple_io_stream_new(in, out);
        g_object_unref(in);
        g_object_unref(out);
        g_task_return_pointer(task, io, g_object_unref);
    }
    g_object_unref(task);
}

static GIOStream *
local_connect_finish(gpointer self, GAsyncResult *result, GError **error)
{
    return g_task_propagate_pointer(G_TASK(result), error);
}

static const OtsTransportInfo local_info = {
    .abi_major = OTS_TRANSPORT_ABI_MAJOR,
    .abi_minor = OTS_TRANSPORT_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_TRANSPORT,
    .name = "local",
    .version = "0.1.0",
    .description = "NDJSON to a local file or standard output",
    .flags = OTS_TRANSPORT_FLAG_RAW,
    .settings = local_settings,
    .create = local_create,
    .destroy = local_destroy,
    .connect_async = local_connect_async,
    .connect_finish = local_connect_finish,
};

OTS_TRANSPORT_DEFINE(local_info)
