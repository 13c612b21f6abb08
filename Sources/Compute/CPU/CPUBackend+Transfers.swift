/// Host and device are the same memory on the CPU: moving data is the identity (or a converting copy
/// into an existing tensor), and a step runs inline on the calling thread.
extension CPUBackend {
    public func upload(_ host: Tensor) throws -> Tensor {
        precondition(host.memory != nil, "upload of \(host): a host tensor is needed")
        return host
    }

    public func upload(_ host: Tensor, into destination: Tensor) throws {
        precondition(host.memory != nil && destination.memory != nil, "upload of \(host) into \(destination)")
        destination.copy(from: host)
    }

    public func download(_ tensor: Tensor) throws -> Tensor {
        precondition(tensor.memory != nil, "download of \(tensor): not a host tensor")
        return tensor
    }

    public func perform<T>(_ body: () throws -> T) throws -> T { try body() }
}
