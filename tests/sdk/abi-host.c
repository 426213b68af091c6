/* SPDX-License-Identifier: Apache-2.0 */
/* A stand-in for the next minor release of otsensord (ABI 1.(N+1)), built
 * from the daemon's real loader (core/plugin/loader.c) with abi-future.h:
 * loads every plugin of a directory and prints, per plugin, its ABI and
 * whether the first reserved descriptor slot (where a minor release adds its
 * field) reads NULL, then the refusals. tests/sdk/test-sdk checks that a
 * plugin built against the released (older) headers loads here. */
#include "core/plugin/loader.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: abi-host PLUGINDIR\n");
        return 2;
    }
    g_autoptr(OtsPluginSet) set = ots_plugin_set_new();
    ots_plugin_set_load_dir(set, argv[1], 0);
    printf("host ABI %d.%d\n", OTS_ABI_MAJOR, (int)OTS_ABI_MINOR);
    for (guint i = 0; i < set->plugins->len; i++) {
        const OtsPlugin *pl = g_ptr_array_index(set->plugins, i);
        const OtsPluginHeader *h = pl->header;
        /* The slot a 1.(N+1) field would occupy: a plugin built against 1.N
         * must leave it NULL so the new daemon treats the field as absent. */
        gconstpointer slot = h->kind == OTS_PLUGIN_KIND_DISSECTOR
                                 ? ((const OtsDissectorInfo *)h)->reserved[0]
                                 : ((const OtsTransportInfo *)h)->reserved[0];
        printf("loaded %s ABI %u.%u reserved0=%s\n", h->name, h->abi_major, h->abi_minor,
               slot ? "set" : "NULL");
    }
    for (guint i = 0; i < set->refused->len; i++)
        printf("refused %s\n", (const char *)set->refused->pdata[i]);
    return 0;
}
