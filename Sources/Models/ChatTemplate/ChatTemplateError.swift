/// Why a chat template could not be parsed or rendered.
public enum ChatTemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The template text is not valid Jinja; `line` and `column` are 1-based.
    case syntax(message: String, line: Int, column: Int)
    /// The template called `raise_exception(message)`: it refuses this conversation.
    case raised(String)
    /// Evaluating the template failed (an undefined variable's attribute, a type error, ...); the
    /// message is the one jinja2/Python would give.
    case render(String)

    /// The message alone, as jinja2 would carry it in its exception.
    public var message: String {
        switch self {
        case .syntax(let m, _, _), .raised(let m), .render(let m): m
        }
    }

    public var description: String {
        switch self {
        case .syntax(let m, let line, let column): "chat template syntax error at line \(line), column \(column): \(m)"
        case .raised(let m): "chat template refused the conversation: \(m)"
        case .render(let m): "chat template failed: \(m)"
        }
    }
}
