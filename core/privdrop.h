/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Started as root outside systemd, otsensord opens its captures and output
 * first, then becomes sensor.user for good: supplementary groups cleared,
 * then the user's primary gid, then its uid (real, effective and saved), and
 * root is checked to be out of reach. Capabilities go with uid 0. */

#include <glib.h>

G_BEGIN_DECLS

#define OTS_PRIVDROP_ERROR (ots_privdrop_error_quark())
GQuark ots_privdrop_error_quark(void);

typedef enum {
    OTS_PRIVDROP_ERROR_NO_USER, /* sensor.user does not exist */
    OTS_PRIVDROP_ERROR_FAILED,  /* setgroups/setgid/setuid failed, or root is still reachable */
} OtsPrivdropError;

/* Whether the drop applies: running as root (effective uid 0) and not as a
 * systemd service ($INVOCATION_ID unset; the unit sets User= itself). */
gboolean ots_privdrop_needed(void);

/* Switches to @user for good. Returns FALSE with @error set (the daemon must
 * then exit rather than run on as root). */
gboolean ots_privdrop_to_user(const char *user, GError **error);

G_END_DECLS
