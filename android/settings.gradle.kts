// The deepedge Android library (AAR): the uniffi Kotlin bindings, the DeepedgeNative JNI class and the
// native libraries for arm64-v8a and x86_64 (build-native.sh). See README.md.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "deepedge-android"
