/* p4reduce softswitch: the P4_16 core library, declarations only.
 * Written for this project from the P4_16 language specification. */
#ifndef P4REDUCE_CORE_P4
#define P4REDUCE_CORE_P4
/* the guard name p4c's core.p4 defines, which some programs test */
#define _CORE_P4_

/* Errors the parser machinery may report; programs may add more. */
error {
    NoError,
    PacketTooShort,
    NoMatch,
    StackOutOfBounds,
    HeaderTooShort,
    ParserTimeout,
    ParserInvalidArgument
}

/* Table match kinds every target understands. */
match_kind {
    exact,
    ternary,
    lpm
}

/* Reading headers from the packet being parsed. */
extern packet_in {
    /* copy the next bits of the packet into a fixed-size header */
    void extract<T>(out T hdr);
    /* variable-size header: the second argument says how many bits the varbit holds */
    void extract<T>(out T variableSizeHeader, in bit<32> variableFieldSizeInBits);
    /* peek at the next bits without consuming them */
    T lookahead<T>();
    /* skip bits */
    void advance(in bit<32> sizeInBits);
    /* whole packet length in bytes */
    bit<32> length();
}

/* Writing headers back in front of the payload. */
extern packet_out {
    void emit<T>(in T hdr);
}

/* Parser check: go to reject with error `err` unless `check` holds. */
extern void verify(in bool check, in error toSignal);

/* The action tables fall back to when nothing else is given. */
@noWarn("unused")
action NoAction() {}

#endif
