import CMyHTML

/// The class, id, role and itemprop names that content management systems give the element holding an article's
/// body ("entry-content", "article-body", `itemprop="articleBody"`), in tiers from most to least telling, as
/// trafilatura's `BODY_XPATH` lists them: the first element (in document order) that matches the first tier with
/// enough text is the page's content root, else the first of the next tier, and so on.
///
/// Starting from the element that holds the article, rather than from the body, leaves out what sits around it and
/// has no telling name: the site's header, related-article teasers, the author box, the footer.
enum ContentContainer {
    /// How a name is compared with an attribute's value, as bytes (Foundation's string search, on every element of
    /// every page, cost more than parsing the page).
    private enum Test {
        case contains([UInt8]), equals([UInt8]), startsWith([UInt8])
        /// Contains, ASCII letters compared without case ("articleBody", "ArticleBody"); the name is lower case.
        case containsIgnoringCase([UInt8])

        static func contains(_ name: String) -> Test { .contains(Array(name.utf8)) }
        static func equals(_ name: String) -> Test { .equals(Array(name.utf8)) }
        static func startsWith(_ name: String) -> Test { .startsWith(Array(name.utf8)) }
        static func containsIgnoringCase(_ name: String) -> Test { .containsIgnoringCase(Array(name.utf8)) }

        /// Whether `value` passes; `lowered` is `value` with its ASCII letters in lower case.
        func matches(_ value: UnsafeRawBufferPointer, lowered: UnsafeRawBufferPointer) -> Bool {
            switch self {
            case .contains(let name): name.withUnsafeBytes { containsBytes(value, $0) }
            case .equals(let name): value.elementsEqual(name)
            case .startsWith(let name): value.count >= name.count && zip(value, name).allSatisfy { $0 == $1 }
            case .containsIgnoringCase(let name): name.withUnsafeBytes { containsBytes(lowered, $0) }
            }
        }
    }

    /// The attributes that name a container.
    private enum Attribute: Int, CaseIterable { case `class`, id, itemprop, role }

    /// One way an element can be named: a test on one attribute.
    private struct Rule {
        let attribute: Attribute
        let test: Test

        static func `class`(_ test: Test) -> Rule { Rule(attribute: .class, test: test) }
        static func id(_ test: Test) -> Rule { Rule(attribute: .id, test: test) }
    }

    /// The tiers, most telling first. Every tier applies to `article`, `div`, `main` and `section` elements; an
    /// `article` tier and a `main` tier match those elements whatever their names.
    private static let tiers: [(rules: [Rule], tag: myhtml_tags?)] = [
        ([.class(.equals("post")), .class(.equals("entry")),
          .class(.contains("post-text")), .class(.contains("post_text")), .class(.contains("post-body")),
          .class(.contains("post-entry")), .class(.contains("postentry")), .class(.contains("post-content")),
          .class(.contains("post_content")), .class(.contains("postcontent")), .class(.contains("postContent")),
          .class(.contains("post_inner_wrapper")), .class(.contains("article-text")), .class(.contains("articletext")),
          .class(.contains("articleText")), .id(.contains("entry-content")), .class(.contains("entry-content")),
          .id(.contains("article-content")), .class(.contains("article-content")), .id(.contains("article__content")),
          .class(.contains("article__content")), .id(.contains("article-body")), .class(.contains("article-body")),
          .id(.contains("article__body")), .class(.contains("article__body")),
          Rule(attribute: .itemprop, test: .equals("articleBody")),
          .id(.containsIgnoringCase("articlebody")), .class(.containsIgnoringCase("articlebody")),
          .id(.equals("articleContent")), .class(.contains("ArticleContent")), .class(.contains("page-content")),
          .class(.contains("text-content")), .id(.contains("body-text")), .class(.contains("body-text")),
          .class(.contains("article__container")), .id(.contains("art-content")), .class(.contains("art-content"))], nil),
        ([], MyHTML_TAG_ARTICLE),
        ([.class(.contains("post-bodycopy")), .class(.contains("storycontent")), .class(.contains("story-content")),
          .class(.equals("postarea")), .class(.equals("art-postcontent")), .class(.contains("theme-content")),
          .class(.contains("blog-content")), .class(.contains("section-content")), .class(.contains("single-content")),
          .class(.contains("single-post")), .class(.contains("main-column")), .class(.contains("wpb_text_column")),
          .id(.startsWith("primary")), .class(.startsWith("article ")), .class(.equals("text")), .id(.equals("article")),
          .class(.equals("cell")), .id(.equals("story")), .class(.equals("story")), .class(.contains("story-body")),
          .id(.contains("story-body")), .class(.contains("field-body")), .class(.containsIgnoringCase("fulltext")),
          Rule(attribute: .role, test: .equals("article"))], nil),
        ([.id(.contains("content-main")), .class(.contains("content-main")), .class(.contains("content_main")),
          .id(.contains("content-body")), .class(.contains("content-body")), .id(.contains("contentBody")),
          .class(.contains("content__body")), .id(.containsIgnoringCase("main-content")),
          .class(.containsIgnoringCase("main-content")), .class(.containsIgnoringCase("page-content")),
          .id(.equals("content")), .class(.equals("content"))], nil),
        ([.class(.startsWith("main")), .id(.startsWith("main")), Rule(attribute: .role, test: .startsWith("main"))],
         MyHTML_TAG_MAIN),
    ]

    /// How many tiers there are.
    static var tierCount: Int { tiers.count }

    private static let candidateTags: Set<myhtml_tag_id_t> = Set([MyHTML_TAG_ARTICLE, MyHTML_TAG_DIV, MyHTML_TAG_MAIN,
                                                                   MyHTML_TAG_SECTION].map { myhtml_tag_id_t($0.rawValue) })

    /// The most telling tier `node` (an element) matches, counted from 0, or nil when it matches none.
    static func tier(of node: HTMLNode) -> Int? {
        let tag = node.tag
        guard candidateTags.contains(tag) else { return nil }
        // Each attribute read once, and lower-cased once: most elements have none of them, and the tiers hold many
        // rules.
        let values = [node.attributeBytes("class"), node.attributeBytes("id"), node.attributeBytes("itemprop"),
                      node.attributeBytes("role")]
        let lowered = values.map { $0.map { $0.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 } } }
        return tiers.indices.first { index in
            if let wholeTag = tiers[index].tag, tag == myhtml_tag_id_t(wholeTag.rawValue) { return true }
            return tiers[index].rules.contains { rule in
                guard let value = values[rule.attribute.rawValue], let lower = lowered[rule.attribute.rawValue] else { return false }
                return lower.withUnsafeBytes { rule.test.matches(value, lowered: $0) }
            }
        }
    }
}
