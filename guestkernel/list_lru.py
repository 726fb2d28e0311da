"""list_lru (mm/list_lru.c, include/linux/list_lru.h, Linux 6.1): the LRU list of a
shrinkable cache, one list per memcg when the cache is memcg-aware.

A memcg-aware list_lru keeps each object on the list of the memcg its slab object is
charged to (list_lru_from_kmem: mem_cgroup_from_slab_obj, the objcg's memcg; an
uncharged object, or one whose objcg was reparented to the root, goes on the root's list,
lru->node[nid].lru, kmemcg_id -1). A child memcg's list is allocated with its first
object (memcg_list_lru_alloc from kmem_cache_alloc_lru; hvsim: at its first
list_lru_add). list_lru_add appends at the tail and, when the list was empty, sets the
memcg's bit of the list's shrinker (set_shrinker_bit). count and walk take the memcg
(list_lru_count_one / list_lru_walk_one: sc->memcg's list, the root's for the root).
At rmdir memcg_reparent_list_lrus splices the memcg's list at the head of its parent's
(list_splice_init: its objects become the parent's oldest) and sets the parent's bit.

hvsim keeps one node per list_lru. Lists are OrderedDicts (item -> None, oldest first);
each item's `lru` attribute is the list it is on (list_lru_del finds the same one: the
object's memcg moves with its list at reparenting). The kernel's memcg-aware list_lrus
(memcg_list_lrus) are in kernel.shrinkers.list_lrus, for memcg_reparent_list_lrus.
"""

from __future__ import annotations

from collections import OrderedDict


class ListLru:
    """struct list_lru, memcg-aware (list_lru_init_memcg)."""

    __slots__ = ("kernel", "root", "memcg_lrus", "shrinker")

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.root: OrderedDict = OrderedDict()  # lru->node[0].lru
        self.memcg_lrus: dict = {}  # memcg -> OrderedDict (lru->xa[kmemcg_id])
        self.shrinker = None  # lru_shrinker_id: the shrinker whose bit list_lru_add sets
        kernel.shrinkers.list_lrus.append(self)  # memcg_list_lrus

    def list_lru_from_kmem(self, obj):
        """The list of the memcg `obj` is charged to, and that memcg (None: the root's)."""
        tree = getattr(self.kernel.slab, "memcg_kmem", None)
        if tree is None:
            return self.root, None
        rec = tree.slab_objcgs.get(obj)
        if rec is None:
            return self.root, None
        memcg = rec[0].memcg
        if memcg.parent is None:
            return self.root, None
        lst = self.memcg_lrus.get(memcg)
        if lst is None:
            lst = self.memcg_lrus[memcg] = OrderedDict()  # memcg_list_lru_alloc
        return lst, memcg

    def add(self, item, obj) -> OrderedDict:
        """list_lru_add: `item` (whose slab object is `obj`) at the tail of its memcg's
        list; the memcg's shrinker bit set if the list was empty. The list."""
        lst, memcg = self.list_lru_from_kmem(obj)
        lst[item] = None
        if memcg is not None and len(lst) == 1 and self.shrinker is not None:
            self.kernel.shrinkers.set_shrinker_bit(memcg, self.shrinker.id)
        return lst

    def list_of(self, memcg) -> OrderedDict:
        """list_lru_from_memcg_idx(lru, nid, memcg_kmem_id(memcg)): the root's for None or
        the root; a memcg with no list has an empty one."""
        if memcg is None or memcg.parent is None:
            return self.root
        lst = self.memcg_lrus.get(memcg)
        return lst if lst is not None else OrderedDict()

    def count_one(self, memcg) -> int:
        """list_lru_count_one"""
        if memcg is None or memcg.parent is None:
            return len(self.root)
        lst = self.memcg_lrus.get(memcg)
        return len(lst) if lst is not None else 0

    def count(self) -> int:
        """list_lru_count: every memcg's items (nlru->nr_items)."""
        return len(self.root) + sum(len(lst) for lst in self.memcg_lrus.values())

    def reparent(self, memcg, parent) -> None:
        """memcg_reparent_list_lru_node: the memcg's items spliced at the head of the
        parent's list (each item's `lru` is its list); the parent's shrinker bit set if
        items moved."""
        src = self.memcg_lrus.pop(memcg, None)
        if not src:
            return
        if parent.parent is None:
            dst = self.root
        else:
            dst = self.memcg_lrus.get(parent)
            if dst is None:
                dst = self.memcg_lrus[parent] = OrderedDict()
        # list_splice_init(&src->list, &dst->list): src's items first, then dst's
        old = list(dst)
        dst.clear()
        for item in src:
            dst[item] = None
            item.lru = dst
        for item in old:
            dst[item] = None
        if self.shrinker is not None:
            self.kernel.shrinkers.set_shrinker_bit(parent, self.shrinker.id)


def memcg_reparent_list_lrus(kernel, memcg, parent) -> None:
    """memcg_reparent_list_lrus (memcg_offline_kmem, after memcg_reparent_objcgs): every
    memcg-aware list_lru's list of `memcg` goes to `parent`."""
    shrinkers = getattr(kernel, "shrinkers", None)
    if shrinkers is None:
        return
    for lru in shrinkers.list_lrus:
        lru.reparent(memcg, parent)
