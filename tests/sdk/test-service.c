/* SPDX-License-Identifier: Apache-2.0 */
/* core/log.c (levels per module, stderr fields), core/notify.c (sd_notify
 * datagrams, watchdog interval) and core/privdrop.c (in a child process). */
#include "core/config/config.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/privdrop.h"

#include <CUnit/CUnit.h>
#include <glib/gstdio.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static OtsConfig *
load(const char *logging)
{
    g_autofree char *text = g_strdup_printf("sensor: { id = \"t\"; };\n%s\n", logging);
    g_autoptr(GError) err = NULL;
    OtsConfig *c = ots_config_load_string(text, "test.conf", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

static void
test_levels(void)
{
    g_autoptr(OtsConfig) c = load("logging: { level = \"warning\"; modules: { flow = \"debug\"; "
                                  "dissector_modbus = \"error\"; }; };");
    g_autoptr(GError) err = NULL;
    CU_ASSERT_TRUE(ots_log_configure(ots_config_get_root(c), NULL, &err));
    CU_ASSERT_TRUE(ots_log_enabled("ots-flow", G_LOG_LEVEL_DEBUG));
    CU_ASSERT_FALSE(ots_log_enabled("ots-capture", G_LOG_LEVEL_INFO));
    CU_ASSERT_FALSE(ots_log_enabled("ots-capture", G_LOG_LEVEL_MESSAGE));
    CU_ASSERT_TRUE(ots_log_enabled("ots-capture", G_LOG_LEVEL_WARNING));
    CU_ASSERT_FALSE(ots_log_enabled("ots-dissector-modbus", G_LOG_LEVEL_WARNING));
    CU_ASSERT_TRUE(ots_log_enabled("ots-dissector-modbus", G_LOG_LEVEL_ERROR));
    CU_ASSERT_FALSE(ots_log_enabled("otsensord", G_LOG_LEVEL_MESSAGE));

    /* -l overrides logging.level, not the modules. */
    CU_ASSERT_TRUE(ots_log_configure(ots_config_get_root(c), "debug", &err));
    CU_ASSERT_TRUE(ots_log_enabled("ots-capture", G_LOG_LEVEL_DEBUG));
    CU_ASSERT_FALSE(ots_log_enabled("ots-dissector-modbus", G_LOG_LEVEL_WARNING));
    CU_ASSERT_FALSE(ots_log_configure(ots_config_get_root(c), "loud", &err));
    CU_ASSERT_PTR_NOT_NULL(err);
    g_clear_error(&err);

    /* A reload replaces the whole filter. */
    g_autoptr(OtsConfig) c2 = load("logging: { level = \"info\"; };");
    CU_ASSERT_TRUE(ots_log_configure(ots_config_get_root(c2), NULL, &err));
    CU_ASSERT_TRUE(ots_log_enabled("ots-dissector-modbus", G_LOG_LEVEL_INFO));
    CU_ASSERT_FALSE(ots_log_enabled("ots-flow", G_LOG_LEVEL_DEBUG));
}

/* Runs @fn with stderr redirected to a file; returns what it wrote. */
static char *
capture_stderr(void (*fn)(void))
{
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp("ots-log-XXXXXX", &path, NULL);
    CU_ASSERT_FATAL(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    char *text = NULL;
    g_file_get_contents(path, &text, NULL, NULL);
    g_unlink(path);
    return text;
}

static void
log_some(void)
{
    ots_log_fields("ots-uplink", G_LOG_LEVEL_MESSAGE, NULL, "proxy-chain", "2", "hop %d connected",
                   2);
    ots_log_fields("ots-capture", G_LOG_LEVEL_INFO, "modbus", NULL, NULL, "filtered out");
    g_log("ots-capture", G_LOG_LEVEL_DEBUG, "also filtered out");
    g_log("ots-flow", G_LOG_LEVEL_DEBUG, "flow detail %u", 7u);
}

static void
test_stderr_fields(void)
{
    ots_log_init(OTS_LOG_TARGET_STDERR);
    CU_ASSERT_FALSE(ots_log_is_journal());
    g_autoptr(OtsConfig) c =
        load("logging: { level = \"message\"; modules: { flow = \"debug\"; }; };");
    CU_ASSERT_TRUE(ots_log_configure(ots_config_get_root(c), NULL, NULL));
    g_autofree char *out = capture_stderr(log_some);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "hop 2 connected (transport=proxy-chain hop=2)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "flow detail 7"));
    CU_ASSERT_PTR_NULL(strstr(out, "filtered out"));
}

static void
test_notify(void)
{
    g_autofree char *dir = g_dir_make_tmp("ots-notify-XXXXXX", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    g_autofree char *path = g_build_filename(dir, "notify", NULL);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

    g_unsetenv("NOTIFY_SOCKET");
    CU_ASSERT_FALSE(ots_notify("READY=1"));
    CU_ASSERT_EQUAL(ots_notify_watchdog_add(), 0);
    g_setenv("NOTIFY_SOCKET", path, TRUE);
    CU_ASSERT_TRUE(ots_notify("READY=1\nSTATUS=capturing"));
    char buf[128] = {0};
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    CU_ASSERT_EQUAL(n, (ssize_t)strlen("READY=1\nSTATUS=capturing"));
    CU_ASSERT_STRING_EQUAL(buf, "READY=1\nSTATUS=capturing");

    /* Watchdog: the interval is ours only if WATCHDOG_PID is us. */
    g_setenv("WATCHDOG_USEC", "40000", TRUE);
    g_unsetenv("WATCHDOG_PID");
    CU_ASSERT_EQUAL(ots_notify_watchdog_usec(), 40000);
    g_setenv("WATCHDOG_PID", "1", TRUE);
    CU_ASSERT_EQUAL(ots_notify_watchdog_usec(), (getpid() == 1 ? 40000 : 0));
    g_autofree char *pid = g_strdup_printf("%d", (int)getpid());
    g_setenv("WATCHDOG_PID", pid, TRUE);
    guint id = ots_notify_watchdog_add();
    CU_ASSERT_NOT_EQUAL(id, 0);
    /* Half the interval (20 ms): run the loop until the ping arrives. */
    gint64 end = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;
    memset(buf, 0, sizeof(buf));
    n = -1;
    while (n < 0 && g_get_monotonic_time() < end) {
        g_main_context_iteration(NULL, TRUE);
        n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    }
    CU_ASSERT_STRING_EQUAL(buf, "WATCHDOG=1");
    g_source_remove(id);
    g_setenv("WATCHDOG_USEC", "nonsense", TRUE);
    CU_ASSERT_EQUAL(ots_notify_watchdog_usec(), 0);

    /* Abstract namespace: "@name". */
    int afd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    g_autofree char *abs_name = g_strdup_printf("@ots-test-notify-%d", (int)getpid());
    struct sockaddr_un aa = {.sun_family = AF_UNIX};
    memcpy(aa.sun_path + 1, abs_name + 1, strlen(abs_name) - 1);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(abs_name));
    CU_ASSERT_EQUAL_FATAL(bind(afd, (struct sockaddr *)&aa, alen), 0);
    g_setenv("NOTIFY_SOCKET", abs_name, TRUE);
    CU_ASSERT_TRUE(ots_notify("STOPPING=1"));
    memset(buf, 0, sizeof(buf));
    CU_ASSERT_EQUAL(recv(afd, buf, sizeof(buf) - 1, MSG_DONTWAIT), 10);
    CU_ASSERT_STRING_EQUAL(buf, "STOPPING=1");
    g_setenv("NOTIFY_SOCKET", "relative/path", TRUE);
    CU_ASSERT_FALSE(ots_notify("READY=1"));
    g_unsetenv("NOTIFY_SOCKET");
    g_unsetenv("WATCHDOG_USEC");
    g_unsetenv("WATCHDOG_PID");
    close(afd);
    close(fd);
    g_unlink(path);
    g_rmdir(dir);
}

/* In a child: the drop is for good, so the test process must not do it. */
static int
child_drop(const char *user)
{
    pid_t pid = fork();
    if (pid == 0) {
        g_autoptr(GError) err = NULL;
        gboolean ok = ots_privdrop_to_user(user, &err);
        if (!ok) {
            /* 3: no such user, 4: could not switch (not root). */
            _exit(g_error_matches(err, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_NO_USER) ? 3 : 4);
        }
        struct passwd *pw = getpwnam(user);
        _exit(pw && getuid() == pw->pw_uid && geteuid() == pw->pw_uid && setuid(0) != 0 ? 0 : 5);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_privdrop(void)
{
    g_autoptr(GError) err = NULL;
    /* Message names the user. */
    CU_ASSERT_FALSE(ots_privdrop_to_user("ots-no-such-user-x", &err));
    CU_ASSERT_TRUE(g_error_matches(err, OTS_PRIVDROP_ERROR, OTS_PRIVDROP_ERROR_NO_USER));
    CU_ASSERT_PTR_NOT_NULL(err ? strstr(err->message, "ots-no-such-user-x") : NULL);
    g_clear_error(&err);
    CU_ASSERT_FALSE(ots_privdrop_to_user("root", &err));
    g_clear_error(&err);
    if (getpwnam("nobody")) {
        /* As root (CI): the switch succeeds and root is gone for good.
         * Otherwise it must fail cleanly instead of half-dropping. */
        CU_ASSERT_EQUAL(child_drop("nobody"), geteuid() == 0 ? 0 : 4);
    }
    g_setenv("INVOCATION_ID", "0123", TRUE);
    CU_ASSERT_FALSE(ots_privdrop_needed());
    g_unsetenv("INVOCATION_ID");
    CU_ASSERT_EQUAL(ots_privdrop_needed(), geteuid() == 0);
}

static CU_TestInfo service_tests[] = {
    {"log levels per module", test_levels},
    {"log to stderr with fields", test_stderr_fields},
    {"sd_notify and watchdog", test_notify},
    {"privilege drop", test_privdrop},
    CU_TEST_INFO_NULL,
};

#define OTS_TEST_SUITES                                                                            \
    {                                                                                              \
        "service", NULL, NULL, NULL, NULL, service_tests                                           \
    }
#include "cunit-main.h"
