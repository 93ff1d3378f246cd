// Checksums and deparser. Only results change an IPv4 header, so only they get a new
// IPv4 checksum (recomputing others would corrupt packets with IP options); their UDP
// checksum is zeroed in ingress, which IPv4 allows.
#ifndef DEPARSER_P4
#define DEPARSER_P4

control AggVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

control AggComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(
            hdr.agg.isValid() && hdr.ipv4.isValid(),
            {
                hdr.ipv4.version,
                hdr.ipv4.ihl,
                hdr.ipv4.diffserv,
                hdr.ipv4.totalLen,
                hdr.ipv4.identification,
                hdr.ipv4.flags,
                hdr.ipv4.fragOffset,
                hdr.ipv4.ttl,
                hdr.ipv4.protocol,
                hdr.ipv4.srcAddr,
                hdr.ipv4.dstAddr
            },
            hdr.ipv4.hdrChecksum,
            HashAlgorithm.csum16);
    }
}

control AggDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.udp);
        pkt.emit(hdr.agg);
    }
}

#endif
