import CShims
#if canImport(Glibc)
import Glibc
#endif

extension HostMemory {
    /// Gives the pages of this memory back to the kernel while keeping the address range mapped, so
    /// views stay valid and read zeros until written again (an engine's sleep on virtual CPU devices).
    /// Private memory drops its pages (`MADV_DONTNEED`); shared memory (a memfd) has its range punched
    /// out of the file, which frees the pages for every process that maps it. Returns the resident
    /// bytes released.
    @discardableResult
    public func releasePages() throws(ComputeError) -> Int {
        let before = residentBytes()
        let length = Self.pageRounded(byteCount)
        if let fd = sharedFileDescriptor {
            // The file keeps its size; the range reads as zeros.
            guard cshim_punch_hole(fd, 0, Int64(byteCount)) == 0 else {
                throw ComputeError("cannot release shared memory of \(byteCount) bytes: \(String(cString: strerror(errno)))")
            }
        } else if byteCount >= 1 << 20 {
            guard madvise(baseAddress, length, MADV_DONTNEED) == 0 else {
                throw ComputeError("cannot release memory of \(byteCount) bytes: \(String(cString: strerror(errno)))")
            }
        } else {
            // A small heap allocation: its pages are shared with other allocations; zero it instead.
            memset(baseAddress, 0, byteCount)
        }
        return max(0, before - residentBytes())
    }

    /// Bytes of this memory now backed by physical pages (`mincore`), the figure a sleep reports on CPU.
    public func residentBytes() -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = UInt(bitPattern: baseAddress) & ~UInt(page - 1)
        let end = UInt(bitPattern: baseAddress) + UInt(max(byteCount, 1))
        let pages = Int((end - start + UInt(page) - 1) / UInt(page))
        var vector = [UInt8](repeating: 0, count: pages)
        let ok = vector.withUnsafeMutableBufferPointer {
            mincore(UnsafeMutableRawPointer(bitPattern: start), Int(end - start), $0.baseAddress) == 0
        }
        guard ok else { return 0 }
        return vector.reduce(0) { $0 + Int($1 & 1) } * page
    }

    private static func pageRounded(_ n: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        return (max(n, 1) + page - 1) / page * page
    }
}
