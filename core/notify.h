/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The sd_notify protocol without libsystemd: one datagram of "KEY=VALUE\n"
 * lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name"
 * for the abstract namespace). Outside systemd every call is a no-op. */

#include <glib.h>

G_BEGIN_DECLS

/* Sends @state (e.g. "READY=1", "RELOADING=1", "STOPPING=1",
 * "STATUS=capturing on eth1"). Returns TRUE if it was sent, FALSE when
 * there is no NOTIFY_SOCKET or sending failed (never fatal). */
gboolean ots_notify(const char *state);

/* The watchdog interval systemd expects (WatchdogSec=), in µs, when
 * $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or this process; else 0. */
guint64 ots_notify_watchdog_usec(void);

/* Adds a main-loop timer sending "WATCHDOG=1" every half watchdog interval.
 * Returns the GSource id, or 0 when no watchdog is requested. The timer runs
 * on the thread-default main context: a stalled main loop stops the pings
 * and systemd restarts the service. */
guint ots_notify_watchdog_add(void);

G_END_DECLS
