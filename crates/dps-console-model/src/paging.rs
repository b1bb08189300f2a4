//! Paging through a query with continuation tokens: the service only goes forward, so the tokens of the pages
//! already seen are kept on a stack to go back.

/// The continuation tokens of the pages seen so far; the last one fetched the current page (`None`: the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageStack {
    tokens: Vec<Option<String>>,
}

impl Default for PageStack {
    fn default() -> Self {
        Self { tokens: vec![None] }
    }
}

impl PageStack {
    /// The token to fetch the current page with.
    pub fn current(&self) -> Option<String> {
        self.tokens.last().cloned().flatten()
    }

    /// 1 for the first page.
    pub fn number(&self) -> usize {
        self.tokens.len()
    }

    pub fn has_prev(&self) -> bool {
        self.tokens.len() > 1
    }

    /// Moves to the page `next` (the current answer's continuation token) fetches.
    pub fn next(&mut self, next: String) {
        self.tokens.push(Some(next));
    }

    /// Moves back one page (stays on the first).
    pub fn prev(&mut self) {
        if self.tokens.len() > 1 {
            self.tokens.pop();
        }
    }

    /// Back to the first page (a new search).
    pub fn reset(&mut self) {
        self.tokens = vec![None];
    }

    /// "51–100 of 230": the rows the current page shows, `shown` being its item count.
    pub fn range_label(&self, page_size: usize, shown: usize, total: Option<u64>) -> String {
        let first = (self.number() - 1) * page_size + 1;
        let range = if shown == 0 { "none".to_owned() } else { format!("{first}–{}", first + shown - 1) };
        match total {
            Some(t) => format!("{range} of {t}"),
            None => range,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_goes_forward_and_back() {
        let mut p = PageStack::default();
        assert_eq!((p.current(), p.number(), p.has_prev()), (None, 1, false));
        p.next("t1".into());
        p.next("t2".into());
        assert_eq!((p.current().as_deref(), p.number(), p.has_prev()), (Some("t2"), 3, true));
        assert_eq!(p.range_label(50, 20, Some(120)), "101–120 of 120");
        p.prev();
        assert_eq!(p.current().as_deref(), Some("t1"));
        p.prev();
        p.prev();
        assert_eq!((p.current(), p.number()), (None, 1));
        assert_eq!(p.range_label(50, 50, None), "1–50");
        assert_eq!(p.range_label(50, 0, Some(0)), "none of 0");
        p.next("x".into());
        p.reset();
        assert_eq!(p, PageStack::default());
    }
}
