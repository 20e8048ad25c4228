package main_test

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// denyFlock makes flock(2) fail with ENOLCK for this thread and the
// programs it executes, as on a file system without flock (NFS without
// lockd): a seccomp filter, which needs no privileges after
// PR_SET_NO_NEW_PRIVS.
func denyFlock() error {
	const (
		ldAbs = 0x20 // BPF_LD | BPF_W | BPF_ABS
		jeqK  = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
		retK  = 0x06 // BPF_RET | BPF_K
	)
	filter := []unix.SockFilter{
		{Code: ldAbs, K: 4}, // seccomp_data.arch
		{Code: jeqK, Jt: 0, Jf: 3, K: unix.AUDIT_ARCH_X86_64},
		{Code: ldAbs, K: 0}, // seccomp_data.nr
		{Code: jeqK, Jt: 0, Jf: 1, K: unix.SYS_FLOCK},
		{Code: retK, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOLCK)},
		{Code: retK, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0)
}
