/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Where log messages go and which are kept.
 *
 * Under systemd (stderr is a journal stream) messages go to the journal as
 * structured entries: MESSAGE, PRIORITY, GLIB_DOMAIN (the module) and, when
 * the caller gives them, PLUGIN, TRANSPORT and HOP. Otherwise they go to
 * stderr, those fields appended as "(plugin=… transport=… hop=…)".
 *
 * Levels: logging.level is the lowest level kept; logging.modules overrides
 * it per module. A module is its log domain without "ots-", "-" written as
 * "_" (ots-dissector-modbus: dissector_modbus). The filter is swapped
 * atomically, so ots_log_configure() may run again on reload while capture
 * threads log. */

#include <glib.h>
#include <otsensor/settings.h>

G_BEGIN_DECLS

typedef enum {
    OTS_LOG_TARGET_AUTO = 0, /* journal if stderr is a journal stream, else stderr */
    OTS_LOG_TARGET_STDERR,
    OTS_LOG_TARGET_JOURNAL,
} OtsLogTarget;

/* Installs the log writer. Call once at start, before any thread exists. */
void ots_log_init(OtsLogTarget target);

/* Whether messages go to the journal. */
gboolean ots_log_is_journal(void);

/* Reads logging.level and logging.modules from @root (a validated config);
 * @override_level (nullable: the -l option) replaces logging.level.
 * Returns FALSE with @error set for an unknown level name. Call at start and
 * after each successful reload. */
gboolean ots_log_configure(const OtsSettings *root, const char *override_level, GError **error);

/* Whether a message of @level from @domain would be kept. */
gboolean ots_log_enabled(const char *domain, GLogLevelFlags level);

/* A message about a plugin, transport or hop: any of the three may be NULL.
 * @domain is the caller's G_LOG_DOMAIN. */
void ots_log_fields(const char *domain, GLogLevelFlags level, const char *plugin,
                    const char *transport, const char *hop, const char *format, ...)
    G_GNUC_PRINTF(6, 7);

G_END_DECLS
