//! Writing to a client socket with `send(2)` and `sendmsg(2)`, not the
//! `write(2)` and `writev(2)` that `std` uses.
//!
//! `write` on a socket goes through the VFS (`fdget_pos`, `vfs_writev`,
//! `sock_write_iter`) before reaching TCP; `send` goes straight to the
//! socket layer. Per delivery that is a measurable share of the whole cost
//! (see docs/lab/performance.md), and a delivery is one syscall.

use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;

/// A [`Write`] over a socket's descriptor that sends with `MSG_NOSIGNAL`, so
/// a peer gone away is an `EPIPE` error, never a signal.
pub struct Sender<'a, S: AsRawFd>(pub &'a S);

impl<S: AsRawFd> Write for Sender<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes for the whole call,
        // and the descriptor is borrowed from a live socket.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        result(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let [one] = bufs {
            return self.write(one);
        }
        // SAFETY: all-zero is a valid `msghdr` (null name, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: `msg` points at `bufs`, valid for the whole call; the
        // kernel only reads them.
        let n = unsafe { libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        result(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sends_one_buffer_or_several_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut sender = Sender(&server);
        assert_eq!(sender.write(b"one ").unwrap(), 4);
        let bufs = [IoSlice::new(b"two "), IoSlice::new(b"three")];
        assert_eq!(sender.write_vectored(&bufs).unwrap(), 9);
        drop(server);
        let mut got = String::new();
        (&client).read_to_string(&mut got).unwrap();
        assert_eq!(got, "one two three");
    }

    #[test]
    fn a_peer_gone_is_an_error_not_a_signal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(client);
        let mut sender = Sender(&server);
        let failed = (0..100).find_map(|_| sender.write(&[0; 1024]).err());
        assert!(failed.is_some(), "a reset peer must fail the send");
    }
}
