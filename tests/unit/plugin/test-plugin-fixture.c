/* SPDX-License-Identifier: Apache-2.0 */
/* One source, several test plugins: FIXTURE_* selects what is wrong. */
#include <otsensor/dissector.h>

G_GNUC_UNUSED static OtsParseResult
fixture_parse(OtsSession *s, gpointer state, OtsDirection dir, OtsReader *r)
{
    ots_reader_skip(r, ots_reader_remaining(r));
    return OTS_PARSE_OK;
}

#ifndef FIXTURE_ABI_MAJOR
#define FIXTURE_ABI_MAJOR OTS_ABI_MAJOR
#endif
#ifndef FIXTURE_ABI_MINOR
#define FIXTURE_ABI_MINOR OTS_ABI_MINOR
#endif

static const OtsDissectorInfo fixture_info = {
    .abi_major = FIXTURE_ABI_MAJOR,
    .abi_minor = FIXTURE_ABI_MINOR,
    .kind = OTS_PLUGIN_KIND_DISSECTOR,
    .name = FIXTURE_NAME,
    .version = "1.0",
    .tcp_ports = (const guint16[]){60001, 0},
#ifndef FIXTURE_NO_PARSE
    .parse = fixture_parse,
#endif
};

#ifndef FIXTURE_NO_SYMBOL
OTS_DISSECTOR_DEFINE(fixture_info)
#else
/* Exported, but not the entry point. */
G_MODULE_EXPORT const void *not_the_entry_point(void);
G_MODULE_EXPORT const void *
not_the_entry_point(void)
{
    return &fixture_info;
}
#endif
