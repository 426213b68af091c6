/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for core/capture/pcap-file.c: every input is read as a
 * classic pcap file, from memory and through the file descriptor path (with
 * its 1 MiB buffer refills). Traps when a record breaks the reader's
 * contract: bytes outside the input, more than the snaplen, or the two paths
 * disagreeing. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/capture/pcap-file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    OtsPcapFile mem;
    if (!ots_pcap_file_init(&mem, data, size))
        return 0;
    /* The same bytes through a file. */
    char path[] = "/tmp/fuzz-pcap-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    if (write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);
    OtsPcapFile *file = ots_pcap_file_open(path);
    unlink(path);
    if (!file)
        abort(); /* the header was accepted from memory */
    OtsPcapRecord a, b;
    OtsPcapNext ra, rb;
    do {
        GError *ea = NULL, *eb = NULL;
        ra = ots_pcap_file_next(&mem, &a, &ea);
        rb = ots_pcap_file_next(file, &b, &eb);
        if (ra != rb)
            abort();
        if (ra == OTS_PCAP_ERROR && (!ea || !eb || strcmp(ea->message, eb->message) != 0))
            abort();
        g_clear_error(&ea);
        g_clear_error(&eb);
        if (ra != OTS_PCAP_RECORD)
            break;
        if (a.data < data || a.data + a.caplen > data + size || a.caplen > mem.snaplen ||
            a.caplen > OTS_PCAP_MAX_SNAPLEN)
            abort();
        if (a.ts != b.ts || a.caplen != b.caplen || a.len != b.len ||
            memcmp(a.data, b.data, a.caplen) != 0)
            abort();
    } while (TRUE);
    if (ots_pcap_file_next(&mem, &a, NULL) != OTS_PCAP_END)
        abort();
    ots_pcap_file_free(file);
    return 0;
}
