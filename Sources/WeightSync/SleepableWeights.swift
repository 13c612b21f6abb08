import Compute

extension SharedWeightBuffer {
    /// Gives the buffer's pages back while every process keeps its mapping (the memfd's range is punched
    /// out): the weights read as zeros until someone writes them, through any mapping. Returns the bytes
    /// released.
    @discardableResult
    public func releaseMemory() throws -> Int { try memory.releasePages() }
}
