/* SPDX-License-Identifier: Apache-2.0 */
/* The floor for the capture benchmark: a bare libpcap read loop that touches
 * every packet's first byte and does nothing else. */
#include <pcap/pcap.h>
#include <stdio.h>

int
main(int argc, char **argv)
{
    char err[PCAP_ERRBUF_SIZE];
    unsigned long long n = 0, bytes = 0, sum = 0;
    for (int i = 1; i < argc; i++) {
        pcap_t *p = pcap_open_offline(argv[i], err);
        if (!p) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        struct pcap_pkthdr *h;
        const u_char *d;
        while (pcap_next_ex(p, &h, &d) == 1) {
            n++;
            bytes += h->caplen;
            sum += h->caplen ? d[0] : 0;
        }
        pcap_close(p);
    }
    printf("%llu packets %llu bytes %llu\n", n, bytes, sum);
    return 0;
}
