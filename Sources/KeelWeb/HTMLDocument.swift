import CMyHTML
import Foundation

/// An HTML document parsed by MyHTML (Debian's `libmodest`): an HTML5 parser, so broken markup is repaired as a
/// browser repairs it, about 9× faster than gumbo on real pages (docs/benchmarks.md). The nodes are valid while
/// the document lives.
final class HTMLDocument {
    private let parser: HTMLParser
    let root: HTMLNode

    /// Parses UTF-8 `html`.
    init(html: String) {
        let parser = HTMLParser.take()
        var html = html
        html.withUTF8 { bytes in
            _ = myhtml_parse(parser.tree, MyENCODING_UTF_8, bytes.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) },
                             bytes.count)
        }
        self.parser = parser
        root = HTMLNode(myhtml_tree_get_document(parser.tree))
    }

    deinit { HTMLParser.give(parser) }
}

/// One MyHTML parser and its tree, reused from document to document (making one costs more than parsing a page);
/// a pool hands them to threads one at a time.
private final class HTMLParser: @unchecked Sendable {
    let myhtml: OpaquePointer
    let tree: OpaquePointer

    private init() {
        myhtml = myhtml_create()
        myhtml_init(myhtml, MyHTML_OPTIONS_PARSE_MODE_SINGLE, 1, 0)
        tree = myhtml_tree_create()
        myhtml_tree_init(tree, myhtml)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var idle: [HTMLParser] = []

    static func take() -> HTMLParser { lock.withLock { idle.popLast() } ?? HTMLParser() }

    static func give(_ parser: HTMLParser) {
        myhtml_tree_clean(parser.tree)
        lock.withLock { idle.append(parser) }
    }
}

/// A node of an `HTMLDocument`: an element, text, a comment or the document.
struct HTMLNode {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }

    /// MyHTML's tag id (`MyHTML_TAG_P`, …; `MyHTML_TAG__TEXT` for text).
    var tag: myhtml_tag_id_t { myhtml_node_tag_id(pointer) }

    var isText: Bool { tag == MyHTML_TAG__TEXT.rawValue }
    /// An element (not text, comment, doctype or the document itself).
    var isElement: Bool { tag > MyHTML_TAG__DOCTYPE.rawValue }

    var children: HTMLChildren { HTMLChildren(first: myhtml_node_child(pointer)) }

    /// The value of attribute `name` (lower case), if present.
    func attribute(_ name: String) -> String? {
        attributeBytes(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The UTF-8 bytes of attribute `name`'s value, if present, without making a string (valid while the document
    /// lives).
    func attributeBytes(_ name: StaticString) -> UnsafeRawBufferPointer? {
        attributeBytes(name.utf8Start, name.utf8CodeUnitCount)
    }

    func attributeBytes(_ name: String) -> UnsafeRawBufferPointer? {
        var name = name
        return name.withUTF8 { attributeBytes($0.baseAddress!, $0.count) }
    }

    private func attributeBytes(_ name: UnsafePointer<UInt8>, _ count: Int) -> UnsafeRawBufferPointer? {
        let key = UnsafeRawPointer(name).assumingMemoryBound(to: CChar.self)
        guard let attribute = myhtml_attribute_by_key(pointer, key, count) else { return nil }
        var length = 0
        guard let value = myhtml_attribute_value(attribute, &length) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: value, count: length)
    }

    /// A word the caller keeps on the node, 0 until set (MyHTML's per-node data pointer, as bits): a memo that costs
    /// no hashing. Trees are reused from page to page, so a value must say which page set it.
    var mark: UInt {
        get { UInt(bitPattern: myhtml_node_get_data(pointer)) }
        nonmutating set { myhtml_node_set_data(pointer, UnsafeMutableRawPointer(bitPattern: newValue)) }
    }

    /// A text node's UTF-8 bytes (empty for other nodes).
    var textBytes: UnsafeRawBufferPointer {
        var length = 0
        guard let text = myhtml_node_text(pointer, &length) else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: text, count: length)
    }
}

/// The children of a node, first to last.
struct HTMLChildren: Sequence, IteratorProtocol {
    var first: OpaquePointer?

    mutating func next() -> HTMLNode? {
        guard let node = first else { return nil }
        first = myhtml_node_next(node)
        return HTMLNode(node)
    }
}
