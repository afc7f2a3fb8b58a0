"""A user's program, as the README writes one, for CI's user-side type check.

CI copies this file to a directory outside the checkout and runs ``mypy --strict``
on it there, so ``plugin_service`` can only be found as installed (issue 17).
Placeholder: the typed example of the typing work replaces it.
"""
from typing import List

from plugin_service import (
    DispatchContext,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
)


class Greeter(ServicePlugin):
    ingresses: List[Ingress] = [Ingress("greetings", event_kinds=("hello",))]

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> str:
        return "hello, %s" % (event.payload,)


def main() -> None:
    with PluginHost() as host:
        greeter = host.add_service("greeter", Greeter, ServiceConfig(queue_size=8))
        host.start_all()
        future = greeter.submit(IngressEvent("greetings", "cli", "world", kind="hello"))
        print(future.result(timeout=5))


if __name__ == "__main__":
    main()
