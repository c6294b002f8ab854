"""DICOM node actions: add and remove the nodes Kahu sends to and answers."""

from __future__ import annotations

from kahu.actions import Actor, Done, perform
from kahu.core import Kahu
from kahu.dimse.nodes import Node


def add_node(kahu: Kahu, actor: Actor, node: Node) -> Done:
    added = perform(
        kahu,
        actor,
        "node.add",
        "admin",
        lambda: kahu.nodes.add(node),
        detail={
            "node": node.name,
            "ae_title": node.ae_title,
            "host": node.host,
            "port": node.port,
            "projects": list(node.projects),
        },
    )
    return Done(f"Node {node.name} added.", added)


def remove_node(kahu: Kahu, actor: Actor, name: str) -> Done:
    perform(
        kahu, actor, "node.remove", "admin", lambda: kahu.nodes.remove(name), detail={"node": name}
    )
    return Done(f"Node {name} removed.")
