/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* setresuid, setresgid */
#include "core/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

G_DEFINE_QUARK(ots - privdrop - error - quark, ots_privdrop_error)

gboolean
ots_privdrop_needed(void)
{
    return geteuid() == 0 && g_getenv("INVOCATION_ID") == NULL;
}

gboolean
ots_privdrop_to_user(const char *user, GError **error)
{
    g_return_val_if_fail(user != NULL, FALSE);
    struct passwd pw, *found = NULL;
    long size = sysconf(_SC_GETPW_R_SIZE_MAX);
    g_autofree char *buf = g_malloc(size > 0 ? (gsize)size : 16384);
    int rc = getpwnam_r(user, &pw, buf, size > 0 ? (gsize)size : 16384, &found);
    if (rc != 0 || !found) {
        g_set_error(error, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_NO_USER,
                    "sensor.user '%s' does not exist%s%s; refusing to keep running as root "
                    "(create it, e.g. systemd-sysusers, or set sensor.user)",
                    user, rc ? ": " : "", rc ? g_strerror(rc) : "");
        return FALSE;
    }
    uid_t uid = pw.pw_uid;
    gid_t gid = pw.pw_gid;
    if (uid == 0) {
        g_set_error(error, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_FAILED,
                    "sensor.user '%s' is root; name an unprivileged account", user);
        return FALSE;
    }
    /* Groups first, while still allowed to change them; uid last. */
    const char *step = NULL;
    if (setgroups(0, NULL) != 0)
        step = "setgroups";
    else if (setresgid(gid, gid, gid) != 0)
        step = "setresgid";
    else if (setresuid(uid, uid, uid) != 0)
        step = "setresuid";
    if (step) {
        int e = errno;
        g_set_error(error, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_FAILED,
                    "cannot switch to user '%s': %s: %s", user, step, g_strerror(e));
        return FALSE;
    }
    /* Trust but verify: neither uid 0 nor the old groups may come back. */
    if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid ||
        setuid(0) == 0 || setegid(0) == 0 || getgroups(0, NULL) != 0) {
        g_set_error(error, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_FAILED,
                    "switched to user '%s' but root privileges are still reachable", user);
        return FALSE;
    }
    g_message("running as user %s (uid %u, gid %u)", user, (unsigned)uid, (unsigned)gid);
    return TRUE;
}
