// Command payload is the process the runtime tests run in a container:
// with no arguments it pauses (a pod sandbox); with PORT BACKLOG it
// listens on 127.0.0.1:PORT with that listen(2) backlog, never accepts,
// and connects to itself until the accept queue is full (backlog+1); it
// does the same on the abstract UNIX socket @backlog-payload-PORT.
package main

import (
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		for {
			time.Sleep(time.Hour)
		}
	}
	port, err1 := strconv.Atoi(os.Args[1])
	backlog, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil {
		os.Stderr.WriteString("usage: payload [PORT BACKLOG]\n")
		os.Exit(2)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	check(err)
	check(syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1))
	check(syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}))
	check(syscall.Listen(fd, backlog))
	// backlog+1 handshakes fit; the rest wait in SYN-SENT and retry.
	var conns []net.Conn
	for range backlog + 1 {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+os.Args[1], 5*time.Second)
		check(err)
		conns = append(conns, c)
	}
	for range 3 {
		go net.DialTimeout("tcp", "127.0.0.1:"+os.Args[1], time.Hour)
	}
	ufd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	check(err)
	name := "@backlog-payload-" + os.Args[1]
	check(syscall.Bind(ufd, &syscall.SockaddrUnix{Name: name}))
	check(syscall.Listen(ufd, backlog))
	for range backlog + 1 {
		c, err := net.DialTimeout("unix", name, 5*time.Second)
		check(err)
		conns = append(conns, c)
	}
	os.Stdout.WriteString("ready\n")
	for {
		time.Sleep(time.Hour)
	}
}

func check(err error) {
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
