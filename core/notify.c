/* SPDX-License-Identifier: Apache-2.0 */
#include "core/notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

gboolean
ots_notify(const char *state)
{
    g_return_val_if_fail(state != NULL, FALSE);
    const char *path = g_getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return FALSE;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    gsize len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
        return FALSE;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace: the length counts, no NUL */
    socklen_t salen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/' ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return FALSE;
    ssize_t n;
    do
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        g_debug("sd_notify %s: %s", path, g_strerror(errno));
    return n == (ssize_t)strlen(state);
}

guint64
ots_notify_watchdog_usec(void)
{
    const char *usec = g_getenv("WATCHDOG_USEC");
    const char *pid = g_getenv("WATCHDOG_PID");
    guint64 v = 0, p = 0;
    if (!usec || !g_ascii_string_to_unsigned(usec, 10, 1, G_MAXUINT64, &v, NULL))
        return 0;
    if (pid &&
        (!g_ascii_string_to_unsigned(pid, 10, 1, G_MAXINT, &p, NULL) || p != (guint64)getpid()))
        return 0;
    return v;
}

static gboolean
on_watchdog(gpointer user_data)
{
    ots_notify("WATCHDOG=1");
    return G_SOURCE_CONTINUE;
}

guint
ots_notify_watchdog_add(void)
{
    guint64 usec = ots_notify_watchdog_usec();
    if (usec == 0 || !g_getenv("NOTIFY_SOCKET"))
        return 0;
    guint64 ms = usec / 2000;
    return g_timeout_add((guint)CLAMP(ms, 1, G_MAXUINT), on_watchdog, NULL);
}
