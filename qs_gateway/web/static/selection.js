// Which items of a list are selected, as in a desktop list: a click selects one item, Ctrl/Cmd
// adds or takes away one, Shift selects the range from the last item clicked. On each row's
// check box the keyboard does the same: Space, Shift+Up/Down, Ctrl+A, Escape.

export class Selection {
  /** `rows()`: the list's rows in order, each with data-uid and a check box `.pick`. */
  constructor(list, rows, onChange) {
    this.list = list;
    this.rows = rows;
    this.onChange = onChange;
    this.uids = new Set();
    this.anchor = null;
    list.addEventListener("click", (event) => this.clicked(event));
    list.addEventListener("keydown", (event) => this.keyed(event));
  }

  order() {
    return this.rows().map((row) => row.dataset.uid);
  }

  /** The selected uids in the list's order (uids no longer listed are forgotten). */
  selected() {
    return this.order().filter((uid) => this.uids.has(uid));
  }

  has(uid) {
    return this.uids.has(uid);
  }

  set(uids, anchor = this.anchor) {
    this.uids = new Set(uids);
    this.anchor = anchor;
    this.changed();
  }

  all() {
    this.set(this.order());
  }

  clear() {
    this.set([], null);
  }

  range(from, to) {
    const order = this.order();
    const [a, b] = [order.indexOf(from), order.indexOf(to)].sort((x, y) => x - y);
    return a < 0 ? [to] : order.slice(a, b + 1);
  }

  /** Show the selection on the rows. */
  changed() {
    for (const row of this.rows()) {
      const on = this.uids.has(row.dataset.uid);
      row.classList.toggle("selected", on);
      const pick = row.querySelector(".pick");
      if (pick) pick.checked = on;
    }
    this.onChange(this.selected());
  }

  clicked(event) {
    const row = event.target.closest("[data-uid]");
    if (!row || event.target.closest("button, a, summary, pre, details, .handle")) return;
    const uid = row.dataset.uid;
    const onBox = event.target.classList.contains("pick");
    if (event.shiftKey && this.anchor) {
      const keep = event.ctrlKey || event.metaKey ? [...this.uids] : [];
      this.set([...keep, ...this.range(this.anchor, uid)]);
    } else if (onBox || event.ctrlKey || event.metaKey) {
      const next = new Set(this.uids);
      if (next.has(uid)) next.delete(uid);
      else next.add(uid);
      this.set(next, uid);
    } else {
      this.set([uid], uid);
    }
  }

  keyed(event) {
    if (!event.target.classList.contains("pick")) return;
    const rows = this.rows();
    const index = rows.findIndex((row) => row.contains(event.target));
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a") {
      event.preventDefault();
      this.all();
    } else if (event.key === "Escape") {
      this.clear();
    } else if ((event.key === "ArrowDown" || event.key === "ArrowUp") && !event.altKey) {
      const next = rows[index + (event.key === "ArrowDown" ? 1 : -1)];
      if (!next) return;
      event.preventDefault();
      next.querySelector(".pick").focus();
      if (event.shiftKey) {
        const anchor = this.anchor && this.uids.has(this.anchor) ? this.anchor : rows[index].dataset.uid;
        this.set(this.range(anchor, next.dataset.uid), anchor);
      }
    }
  }
}
