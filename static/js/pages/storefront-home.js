// The storefront part of the home page (index.js): search (GET /api/v1/search, public),
// category chips (GET /api/v1/categories), and for a logged-in user the shelves:
// 正在直播 / 即将开始 (GET /api/v1/rooms?status=live|upcoming), 精选课程
// (GET /api/v1/search?kind=course, 已购 from GET /api/v1/me/courses) and 找咨询师
// (GET /api/v1/consultants). Each shelf shows only when its plugin's routes exist.

import { $, el, show, showError, whileBusy } from "../ui.js";
import { consultantCard, resultCard, roomCard, serverNow } from "../storefront.js";

const SHELF_SIZE = 10;
const PAGE_SIZE = 20;

export class Storefront {
  constructor(kpay, errorBox) {
    this.kpay = kpay;
    this.errorBox = errorBox;
    this.user = null;
    this.paths = new Set();
    this.category = null;
    this.query = "";
    this.cursor = null;
    this.now = () => Date.now();
    this.bought = new Set();
    this.categoriesLoaded = false;
    $("#search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.search($("#search-input").value.trim());
    });
    $("#clear-search").addEventListener("click", () => {
      $("#search-input").value = "";
      this.query = "";
      if (!this.user && this.category) this.pick(null);
      else this.refresh();
    });
    $("#more-results").addEventListener("click", (event) => {
      whileBusy(event.currentTarget, () => this.loadResults(false), "加载中…");
    });
  }

  /** Called by index.js on every render (login, logout). */
  async show(user, paths, dev) {
    this.user = user;
    this.paths = paths;
    this.now = await serverNow(this.kpay, dev);
    await this.loadCategories();
    await this.refresh();
  }

  async loadCategories() {
    if (this.categoriesLoaded) return;
    try {
      const { categories } = await this.kpay.get("/api/v1/categories");
      const nav = $("#categories");
      const chip = (name, label) => {
        const button = el("button", { type: "button", "aria-pressed": String(name === this.category),
          "data-category": name || "" }, label);
        button.addEventListener("click", () => this.pick(name));
        return button;
      };
      nav.replaceChildren(chip(null, "全部"), ...categories.map((name) => chip(name, name)));
      show(nav, categories.length > 0);
      this.categoriesLoaded = true;
    } catch (error) {
      showError(this.errorBox, error);
    }
  }

  pick(category) {
    this.category = category;
    for (const button of document.querySelectorAll("#categories button")) {
      button.setAttribute("aria-pressed", String((button.dataset.category || null) === category));
    }
    this.refresh();
  }

  search(query) {
    this.query = query;
    this.refresh();
  }

  async refresh() {
    // Before login the shelves (which need a user) are hidden: a category is then
    // browsed through the public search.
    const searching = Boolean(this.query) || (!this.user && Boolean(this.category));
    show($("#results"), searching);
    show($("#browse"), !searching && Boolean(this.user));
    try {
      if (this.user) await this.loadBought();
      if (searching) await this.loadResults(true);
      else if (this.user) await this.loadShelves();
    } catch (error) {
      showError(this.errorBox, error);
    }
  }

  async loadBought() {
    if (!this.paths.has("/api/v1/me/courses")) return;
    const { courses } = await this.kpay.get("/api/v1/me/courses?limit=200");
    this.bought = new Set(courses.map((entry) => entry.course.id));
  }

  async loadResults(fresh) {
    if (fresh) this.cursor = null;
    const params = new URLSearchParams({ q: this.query, limit: String(PAGE_SIZE) });
    if (this.category) params.set("category", this.category);
    if (this.cursor) params.set("cursor", this.cursor);
    const page = await this.kpay.get(`/api/v1/search?${params}`);
    const cards = page.items.map((item) => resultCard(item, this.now(), this.bought)).filter(Boolean);
    const list = $("#result-list");
    if (fresh) list.replaceChildren(...cards);
    else list.append(...cards);
    $("#results-title").textContent = this.query ? `“${this.query}”的搜索结果` : this.category;
    show($("#result-empty"), list.children.length === 0);
    this.cursor = page.next_cursor;
    show($("#more-results"), Boolean(this.cursor));
  }

  async loadShelves() {
    const has = (path) => this.paths.has(path);
    const category = this.category ? `&category=${encodeURIComponent(this.category)}` : "";
    const get = (path, extra = "") => this.kpay.get(`${path}?limit=${SHELF_SIZE}${extra}${category}`);
    const [live, upcoming, courses, consultants] = await Promise.all([
      has("/api/v1/rooms") ? get("/api/v1/rooms", "&status=live") : null,
      has("/api/v1/rooms") ? get("/api/v1/rooms", "&status=upcoming") : null,
      // Courses from the search index: it has the authors' names, covers and counts.
      has("/api/v1/courses") ? get("/api/v1/search", "&kind=course") : null,
      has("/api/v1/consultants") ? get("/api/v1/consultants") : null,
    ]);
    const now = this.now();
    const shelf = (section, list, items, card) => {
      $(list).replaceChildren(...(items || []).map(card));
      show($(section), Boolean(items && items.length));
      return items ? items.length : 0;
    };
    let shown = 0;
    shown += shelf("#live-now", "#live-list", live?.rooms, (room) => roomCard(room, now));
    shown += shelf("#upcoming", "#upcoming-list", upcoming?.rooms, (room) => roomCard(room, now));
    shown += shelf("#courses", "#course-list", courses?.items,
      (item) => resultCard(item, now, this.bought));
    shown += shelf("#consultants", "#consultant-list", consultants?.consultants, consultantCard);
    // An empty store tells a consultant what to do about it: sell something.
    const seller = !this.category && this.user?.role === "consultant";
    $("#browse-empty").replaceChildren(...(seller
      ? ["还没有上架的内容，", el("a", { href: "/static/console.html" }, "去工作台创建直播间或课程")]
      : [this.category ? "这个分类还没有内容" : "还没有上架的内容，稍后再来看看"]));
    show($("#browse-empty"), shown === 0);
  }
}
