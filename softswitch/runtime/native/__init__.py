"""The native back end: the IR compiled to C and the port loop in C (see the runtime
package overview). Everything here is optional: without a C compiler the Python back end
runs every program (`runtime.backend`)."""
